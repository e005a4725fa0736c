#!/usr/bin/env bash
# A real SLURM on this machine (munge + slurmctld + slurmd on localhost, Debian's slurm-wlm),
# then the cohort recipe: hpc/slurm/submit_cohort.sh over a 3-subject synthetic dataset
# with --sloppy in native space (the recipes are what is tested here; the template registration
# is tested by the test suite), waiting for the array and the group job, and checking every
# output.
#
#   apt-get install -y slurm-wlm munge     (as root)
#   bash benchmarks/slurm_cohort.sh [LOG]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
log="${1:-$here/benchmarks/output/slurm_cohort.log}"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1
python=${PYTHON:-$here/.venv/bin/python}
root=${SLURM_TEST_DIR:-/tmp/mcinr-slurm}
rm -rf "$root"
mkdir -p "$root"
node=$(hostname -s)
cpus=$(nproc)

echo "== munge"
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2> /dev/null
fi
chown munge:munge /etc/munge/munge.key 2> /dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge 2> /dev/null || true
pgrep -x munged > /dev/null || su -s /bin/sh munge -c "munged" || munged --force

echo "== slurm.conf ($node, $cpus CPUs)"
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=mcinr
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node CPUs=$cpus RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
pkill -x slurmctld || true
pkill -x slurmd || true
sleep 1
slurmctld -c
slurmd -c
for _ in $(seq 30); do
    if sinfo -h -o '%T' 2> /dev/null | grep -q idle; then break; fi
    sleep 1
done
sinfo

echo "== dataset"
"$python" -c "
from mcinr_bids.quality.phantom import write_bids_phantom
write_bids_phantom('$root/bids', subjects=(('01', None, False), ('02', None, False), ('03', None, False)), resolution=3.0)
"
started=$(date +%s)
export MCINR_CMD="$python -m mcinr_bids.cli.run"
export TEMPLATEFLOW_HOME="$root/templateflow-empty"
export SCRATCH_DIR="$root/scratch"
export SBATCH_ARGS="--cpus-per-task=1 --mem=3G"
mkdir -p "$SCRATCH_DIR"
bash "$here/hpc/slurm/submit_cohort.sh" "$root/bids" "$root/out" --sloppy \
    --output-space native --output-resolution 3 --skip-bids-validation --omp-nthreads 1
for _ in $(seq 600); do
    if [ -z "$(squeue -h)" ]; then break; fi
    sleep 2
done
echo "== finished after $(( $(date +%s) - started )) s"
sacct 2> /dev/null | head -20 || true
cat "$root/out/logs/exit_codes.tsv"
ls "$root/out" "$root/out/logs"

echo "== checks"
"$python" - <<PY
import pandas as pd, pathlib
out = pathlib.Path("$root/out")
codes = pd.read_csv(out / "logs" / "exit_codes.tsv", sep="\t")
assert sorted(codes.participant_id) == ["sub-01", "sub-02", "sub-03"], codes
assert (codes.exit_code == 0).all(), codes
for s in ("01", "02", "03"):
    assert list((out / f"sub-{s}" / "anat").glob("*desc-superres_T1w.nii.gz")), s
    assert (out / f"sub-{s}.html").exists(), s
group = pd.read_csv(out / "group_desc-superres_metrics.tsv", sep="\t")
assert set(group.participant_id) == {"sub-01", "sub-02", "sub-03"}
assert (out / "group_report.html").exists()
print("all SLURM cohort checks passed")
PY
scancel -u root 2> /dev/null || true
pkill -x slurmd || true
pkill -x slurmctld || true

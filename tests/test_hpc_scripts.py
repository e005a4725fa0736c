"""The SLURM recipes under bash with the scheduler's environment variables.

(A real slurmctld/slurmd run over 3 participants is in benchmarks/slurm_cohort.sh, which
.ci/run runs where it can install slurm-wlm.)  Here the array script runs the real app
(--sloppy) for 2 synthetic participants at once, then the group script.  Native space: what
is tested here is the recipes (task numbers, exit codes, scratch, the group job); the template
registration is tested in tests/test_bids_app.py and tests/test_registration_cohort.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mcinr_bids.quality.phantom import write_bids_phantom

#: end-to-end runs of the app: the long tier (pytest -m slow; .ci/run runs both)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "hpc" / "slurm"


def environment(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update(MCINR_CMD=f"{sys.executable} -m mcinr_bids.cli.run",
               TEMPLATEFLOW_HOME=str(tmp_path / "templateflow-empty"),
               SCRATCH_DIR=str(tmp_path / "scratch"), SLURM_ARRAY_JOB_ID="4242",
               SLURM_CPUS_PER_TASK="1", **extra)
    return env


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cohort")
    bids = tmp_path / "bids"
    write_bids_phantom(str(bids), subjects=(("01", None, False), ("02", None, False)),
                       resolution=3.0)
    output = tmp_path / "out"
    # the array tasks start together, as on a cluster: the exit-code table's lock and the
    # write-once dataset_description.json are exercised by concurrent writers
    logs = [open(tmp_path / f"task-{task}.log", "w") for task in (1, 2)]
    tasks = [subprocess.Popen(
        ["bash", str(SLURM / "participant_array.sbatch"), str(bids), str(output),
         "--sloppy", "--output-space", "native", "--output-resolution", "3",
         "--skip-bids-validation"],
        env=environment(tmp_path, SLURM_ARRAY_TASK_ID=str(task)), stdout=log,
        stderr=subprocess.STDOUT) for task, log in zip((1, 2), logs)]
    codes = [task.wait() for task in tasks]
    for log in logs:
        log.close()
    group = subprocess.run(["bash", str(SLURM / "group.sbatch"), str(bids), str(output)],
                           env=environment(tmp_path), capture_output=True, text=True,
                           check=False)
    return {"tmp": tmp_path, "bids": bids, "out": output, "codes": codes, "group": group}


def test_array_tasks_and_exit_codes(cohort):
    logs = {p.name: p.read_text()[-2000:] for p in cohort["tmp"].glob("task-*.log")}
    assert cohort["codes"] == [0, 0], logs
    table = pd.read_csv(cohort["out"] / "logs" / "exit_codes.tsv", sep="\t")
    assert sorted(table["participant_id"]) == ["sub-01", "sub-02"]
    assert (table["exit_code"] == 0).all() and (table["job_id"] == 4242).all()
    for subject in ("01", "02"):
        anat = cohort["out"] / f"sub-{subject}" / "anat"
        assert list(anat.glob("*desc-superres_FLAIR.nii.gz"))
    assert not any((cohort["tmp"] / "scratch").iterdir())  # node-local work cleaned


def test_group_after_the_array(cohort):
    assert cohort["group"].returncode == 0, cohort["group"].stderr[-2000:]
    table = pd.read_csv(cohort["out"] / "group_desc-superres_metrics.tsv", sep="\t")
    assert set(table["participant_id"]) == {"sub-01", "sub-02"}
    assert (cohort["out"] / "group_report.html").exists()


def test_task_beyond_the_list_is_recorded(cohort, tmp_path):
    exit_tsv = tmp_path / "codes.tsv"
    result = subprocess.run(
        ["bash", str(SLURM / "participant_array.sbatch"), str(cohort["bids"]),
         str(tmp_path / "out")],
        env=environment(tmp_path, SLURM_ARRAY_TASK_ID="9", EXIT_TSV=str(exit_tsv)),
        capture_output=True, text=True, check=False)
    assert result.returncode == 3
    assert "no participant number 9" in result.stderr
    assert exit_tsv.read_text().splitlines()[-1].split("\t")[-1] == "3"


def test_submit_cohort_chains_the_group_job(cohort, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls.txt"
    (fake / "sbatch").write_text(
        f'#!/bin/bash\necho "$@" >> {calls}\n'
        'if [[ "$*" == *--array* ]]; then echo 101; else echo 102; fi\n')
    (fake / "sbatch").chmod(0o755)
    env = environment(tmp_path, PATH=f"{fake}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(SLURM / "submit_cohort.sh"), str(cohort["bids"]),
                             str(tmp_path / "out"), "--sloppy"], env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    array_call, group_call = calls.read_text().splitlines()
    assert "--array=1-2" in array_call and array_call.endswith("--sloppy")
    assert "--dependency=afterany:101" in group_call and "group.sbatch" in group_call

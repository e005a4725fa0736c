"""Eight participant runs started at once into one output folder (a SLURM array's situation),
with every internet connection blocked: all finish, the dataset description is written once,
the validator accepts the result, and identical inputs give bit-identical derivatives (issue 15).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.quality.phantom import write_bids_phantom

#: end-to-end runs of the app: the long tier (pytest -m slow; .ci/run runs both)
pytestmark = pytest.mark.slow

GUARD = Path(__file__).parent / "network_guard"
SUBJECTS = [f"0{i}" for i in range(1, 9)]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    bids, out = root / "bids", root / "out"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=3.0, factor=2)
    source = bids / "sub-01" / "anat"
    for subject in SUBJECTS[1:]:  # the same images: the same derivatives, bit for bit
        anat = bids / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True)
        for path in source.iterdir():
            shutil.copyfile(path, anat / path.name.replace("sub-01", f"sub-{subject}"))
    (bids / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{s}\n" for s in SUBJECTS))
    network_log = root / "network.log"
    network_log.touch()
    environment = {**os.environ, "MCINR_NETWORK_LOG": str(network_log),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD),
                                                                os.environ.get("PYTHONPATH")])),
                   "TEMPLATEFLOW_HOME": str(root / "templateflow-empty")}
    processes = [subprocess.Popen(
        [sys.executable, "-m", "mcinr_bids.cli.run", str(bids), str(out), "participant",
         "--participant-label", subject, "-w", str(root / f"work-{subject}"), "--sloppy",
         "--nprocs", "1", "--omp-nthreads", "1", "--output-space", "native",
         "--output-resolution", "3"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for subject in SUBJECTS]
    logs = [process.communicate(timeout=900)[0] for process in processes]
    return {"out": out, "codes": [p.returncode for p in processes], "logs": logs,
            "network": network_log.read_text()}


def test_all_eight_finish(cohort):
    for code, log in zip(cohort["codes"], cohort["logs"]):
        assert code == 0, log[-3000:]
    for subject in SUBJECTS:
        assert list((cohort["out"] / f"sub-{subject}" / "anat").glob("*desc-superres_T1w.nii.gz"))


def test_no_internet_connection_was_attempted(cohort):
    assert cohort["network"] == ""


def test_description_once_and_nothing_half_written(cohort):
    out = cohort["out"]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert not list(out.rglob(".tmp-*")) and not list(out.rglob(".staging-*"))


def test_validator_accepts_the_cohort(cohort):
    result = subprocess.run(["bids-validator-deno", str(cohort["out"]), "--format", "json"],
                            capture_output=True, text=True, check=False)
    issues = json.loads(result.stdout)["issues"]["issues"]
    assert [i for i in issues if i.get("severity") == "error"] == []


def test_same_seed_same_derivatives_bit_for_bit(cohort):
    def arrays(subject):
        anat = cohort["out"] / f"sub-{subject}" / "anat"
        return [np.asanyarray(nib.load(p).dataobj)
                for p in sorted(anat.glob("*desc-superres_*.nii.gz"))]

    first = arrays("01")
    assert len(first) == 2
    for subject in SUBJECTS[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(first, arrays(subject))), subject


def test_a_killed_participant_run_resumes_its_fit(tmp_path):
    """kill -9 of the whole app (scheduler and workers) mid-fit; the rerun continues the fit
    from the node's work folder (the node is resumable) instead of starting from epoch 0."""
    import signal
    import time

    import pandas as pd

    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=3.0, factor=2)
    settings = tmp_path / "long.toml"
    settings.write_text("[inr]\nepochs = 16\nearly_stopping = false\ncheckpoint_seconds = 0\n")
    command = [sys.executable, "-m", "mcinr_bids.cli.run", str(bids), str(out), "participant",
               "-w", str(work), "--sloppy", "--nprocs", "1", "--omp-nthreads", "1",
               "--output-space", "native", "--output-resolution", "3",
               "--skip-bids-validation", "--config-file",
               str(settings)]
    environment = {**os.environ, "TEMPLATEFLOW_HOME": str(tmp_path / "templateflow-empty")}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while (not list(work.rglob(".mcinr-fit-resume.pt")) and time.time() < deadline
           and process.poll() is None):
        time.sleep(0.1)
    assert list(work.rglob(".mcinr-fit-resume.pt")), "the fit saved no training state"
    os.killpg(process.pid, signal.SIGKILL)  # the scheduler and its workers at once
    process.wait()
    rerun = subprocess.run(command, env=environment, capture_output=True, text=True,
                           check=False)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    anat = out / "sub-01" / "anat"
    history = pd.read_csv(anat / "sub-01_desc-superres_history.tsv", sep="\t")
    assert list(history["epoch"]) == list(range(1, 17))
    sidecar = json.loads(next(anat.glob("*desc-superres_T1w.json")).read_text())
    assert sidecar["INR"]["ResumedFromEpoch"] >= 1

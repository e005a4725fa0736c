"""kill -9 of the mcinr-bids process alone (as a scheduler's or a user's kill of the PID often
does) ends its workers too, and the rerun finishes from the saved state (a worker left fitting
went on rewriting that state; the rerun resumed from it, then failed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcinr_bids.quality.phantom import write_bids_phantom

#: end-to-end runs of the app: the long tier (pytest -m slow; .ci/run runs both)
pytestmark = pytest.mark.slow


def session_processes(session: int) -> list[int]:
    """The live (not zombie) processes of a session, from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def start_fit(tmp_path: Path):
    """A participant run in its own session, once its fit has saved a resumable state:
    ``(process, command, environment, output folder)``."""
    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=4.0, factor=2)
    config = tmp_path / "settings.toml"  # a fit long enough to be stopped, saved every epoch
    config.write_text("[inr]\nepochs = 24\nearly_stopping = false\ncheckpoint_seconds = 0.0\n"
                      "[inr.advanced]\nthrough_plane_steps = 10\n")
    command = [sys.executable, "-m", "mcinr_bids.cli.run", str(bids), str(out), "participant",
               "-w", str(work), "--nprocs", "2", "--omp-nthreads", "1", "--output-space",
               "native", "--output-resolution", "4", "--skip-bids-validation",
               "--config-file", str(config)]
    environment = {**os.environ, "TEMPLATEFLOW_HOME": str(tmp_path / "templateflow-empty")}
    process = subprocess.Popen(command, start_new_session=True, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while (not list(work.rglob(".mcinr-fit-resume.pt")) and time.time() < deadline
           and process.poll() is None):  # a run that ended early fails the test at once
        time.sleep(0.2)
    assert list(work.rglob(".mcinr-fit-resume.pt")), (
        f"the fit saved no state (the run's exit code: {process.poll()})")
    time.sleep(1.0)  # a few epochs further
    return process, command, environment, out


def wait_for_session_to_end(session: int, seconds: float = 30.0) -> list[int]:
    """The session's processes still alive after ``seconds`` (killed then, so that no orphan
    outlives the test)."""
    deadline = time.time() + seconds
    while session_processes(session) and time.time() < deadline:
        time.sleep(0.5)
    left = session_processes(session)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def test_killing_the_main_process_ends_its_workers_and_the_rerun_finishes(tmp_path):
    main, command, environment, out = start_fit(tmp_path)
    os.kill(main.pid, signal.SIGKILL)  # the main process alone
    main.wait()
    assert wait_for_session_to_end(main.pid) == [], "workers outlived the main process"
    rerun = subprocess.run(command, env=environment, capture_output=True, text=True,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert list(out.rglob("sub-01_*desc-superres_T1w.nii.gz"))


def test_ctrl_c_keeps_the_fit_resumable(tmp_path):
    """SIGINT to the whole process group (Ctrl-C in a terminal): the rerun resumes the fit
    (it started again at epoch 1)."""
    import json

    main, command, environment, out = start_fit(tmp_path)
    os.killpg(main.pid, signal.SIGINT)
    # at once, with the shell's code for an interrupt (leaving through Python's exit handlers
    # once hung on the worker pool's threads)
    assert main.wait(timeout=60) == 130
    assert wait_for_session_to_end(main.pid) == []
    rerun = subprocess.run(command, env=environment, capture_output=True, text=True,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    sidecar = json.loads(next(out.rglob("sub-01_*desc-superres_T1w.json")).read_text())
    assert (sidecar["INR"]["ResumedFromEpoch"] or 0) >= 1, sidecar["INR"]

"""A cohort with one mis-registered subject: the participant level finishes every subject, the
checks say WARN for that one only, and the group level lists it first, linked to its page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest

from mcinr_bids.cli.run import main
from mcinr_bids.core.geometry import rigid_matrix
from mcinr_bids.quality.phantom import write_bids_phantom

#: end-to-end runs of the app: the long tier (pytest -m slow; .ci/run runs both)
pytestmark = pytest.mark.slow

#: system calls that create, change or remove files (strace's names)
WRITING_CALLS = "openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat," \
    "link,linkat,symlink,symlinkat,truncate,chmod,fchmodat"


def written_paths(trace: Path) -> set[str]:
    """The absolute paths that strace's per-process logs (``-ff -o trace``: ``trace.PID``, one
    whole line per call) show written, created or removed by a successful call."""
    written = set()
    lines = [line for log in trace.parent.glob(f"{trace.name}.*")
             for line in log.read_text(errors="replace").splitlines()]
    for line in lines:
        match = re.match(r"(\w+)\((.*)\)\s+=\s+(-?\d+)", line)
        if not match or int(match.group(3)) < 0:
            continue
        call, arguments = match.group(1), match.group(2)
        paths = re.findall(r'"([^"]*)"', arguments)
        if not paths or (call in ("open", "openat")
                         and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", arguments)):
            continue
        written.add(paths[-1] if call.startswith(("rename", "link", "symlink")) else paths[0])
    return {path for path in written if path.startswith("/")}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    bids_dir, output_dir, work_dir = root / "bids", root / "out", root / "work"
    paths = write_bids_phantom(str(bids_dir), subjects=(("01", None, False),
                                                        ("02", None, False)),
                               motion_degrees=0.0)
    # sub-02's FLAIR header is 40 mm off its T1w's, and --registration header trusts headers
    flair = nib.load(paths[("02", None)]["FLAIR"])
    affine = rigid_matrix(translation_mm=(0.0, 40.0, 0.0)) @ flair.affine
    moved = nib.Nifti1Image(flair.get_fdata(dtype="float32"), affine)
    moved.set_qform(affine, 1)
    moved.set_sform(affine, 1)
    moved.to_filename(paths[("02", None)]["FLAIR"])
    # the participant level runs under strace where it is installed: every file it writes
    trace = root / "trace.log" if shutil.which("strace") else None
    command = [sys.executable, "-m", "mcinr_bids.cli.run", str(bids_dir), str(output_dir),
               "participant", "-w", str(work_dir), "--sloppy", "--nprocs", "2",
               "--omp-nthreads", "1", "--output-resolution", "2", "--registration", "header"]
    if trace:
        command = ["strace", "-ff", "-qq", "-o", str(trace), "-e", f"trace={WRITING_CALLS}",
                   *command]
    environment = {**os.environ, "TEMPLATEFLOW_HOME": str(root / "templateflow-empty"),
                   "PYTHONDONTWRITEBYTECODE": "1"}
    participant = subprocess.run(command, env=environment, cwd=root, capture_output=True,
                                 text=True, check=False)
    group = main([str(bids_dir), str(output_dir), "group"])
    return {"root": root, "out": output_dir, "work": work_dir, "trace": trace,
            "codes": (participant.returncode, group), "stderr": participant.stderr}


def test_every_subject_finishes(cohort):
    assert cohort["codes"] == (0, 0), cohort["stderr"][-3000:]


def test_nothing_is_written_outside_the_output_and_work_folders(cohort):
    if cohort["trace"] is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    allowed = (str(cohort["out"]), str(cohort["work"]), "/dev/", "/proc/", "/sys/",
               # TemplateFlow lays out its own (empty) home when it is first imported
               str(cohort["root"] / "templateflow-empty"))
    written = written_paths(cohort["trace"])
    assert any(path.startswith(str(cohort["out"])) for path in written)  # the trace works
    assert sorted(p for p in written if not p.startswith(allowed)) == []


def test_the_misregistered_subject_is_flagged_in_its_metrics_and_page(cohort):
    out = cohort["out"]
    dice = {}
    for subject in ("01", "02"):
        table = pd.read_csv(out / f"sub-{subject}" / "anat" /
                            f"sub-{subject}_desc-superres_metrics.tsv", sep="\t")
        rows = table[table["measure"] == "registration_image_dice"]
        assert list(rows["image"]) == [f"sub-{subject}_FLAIR"]
        dice[subject] = float(rows["value"].iloc[0])
    assert dice["01"] >= 0.85 > dice["02"], dice
    assert 'Registration checks: <strong class="pass">PASS' in (out / "sub-01.html").read_text()
    page = (out / "sub-02.html").read_text()
    assert re.search(r'Registration checks: <strong class="warn">WARN</strong>: '
                     r"sub-02_FLAIR on the reference: Dice 0\.\d\d &lt; 0\.85", page)


def test_the_group_lists_the_warning_first_with_a_link(cohort):
    out = cohort["out"]
    qc = pd.read_csv(out / "group_desc-qc_metrics.tsv", sep="\t", keep_default_na=False)
    assert list(qc["participant_id"]) == ["sub-02", "sub-01"]
    assert list(qc["qc"]) == ["WARN", "PASS"]
    assert list(qc["registration"]) == ["WARN", "PASS"]
    assert "sub-02_FLAIR on the reference" in qc.loc[0, "reasons"]
    assert qc.loc[1, "reasons"] == "" and qc.loc[0, "holdout"] == "n/a"
    table = pd.read_csv(out / "group_desc-superres_metrics.tsv", sep="\t")
    flair = table[table["image"] == "sub-02_FLAIR"]
    assert float(flair["registration_image_dice"].iloc[0]) < 0.85
    reference = table[table["image"] == "sub-01_T1w"]
    assert float(reference["registration_template_dice"].iloc[0]) >= 0.85
    report = (out / "group_report.html").read_text()
    assert "1 of 2 subject/session(s) to look at" in report
    first, second = report.index('<a href="sub-02.html">'), report.index('<a href="sub-01.html">')
    assert first < second

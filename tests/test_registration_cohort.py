"""A cohort with one mis-registered subject: the participant level finishes every subject, the
checks say WARN for that one only, and the group level lists it first, linked to its page."""

from __future__ import annotations

import re

import nibabel as nib
import pandas as pd
import pytest

from mcinr_bids.cli.run import main
from mcinr_bids.geometry import rigid_matrix
from mcinr_bids.phantom import write_bids_phantom


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
    arguments = [str(bids_dir), str(output_dir), "participant", "-w", str(work_dir),
                 "--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--output-resolution", "2",
                 "--registration", "header"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEMPLATEFLOW_HOME", str(root / "templateflow-empty"))
        participant = main(arguments)
        group = main([str(bids_dir), str(output_dir), "group"])
    return {"out": output_dir, "codes": (participant, group)}


def test_every_subject_finishes(cohort):
    assert cohort["codes"] == (0, 0)


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
    report = (out / "group_report.html").read_text()
    assert "1 of 2 subject/session(s) to look at" in report
    first, second = report.index('<a href="sub-02.html">'), report.index('<a href="sub-01.html">')
    assert first < second

"""End-to-end: the BIDS App through the real Nipype workflow (MultiProc, 2 processes).

A synthetic BIDS dataset is made from the MNI152 template that nilearn ships: sub-01 is
skull-stripped, sub-02 (with a session) has skull and scalp and a head pose off the template,
every FLAIR is rotated and shifted against its T1w (the subject moved), sub-03 has a T1w
only and sub-04 a T1w with a few NaN voxels (both must be skipped while the others finish).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mcinr_bids.cli.run import main
from mcinr_bids.core.interpolation import mask_on_grid
from mcinr_bids.quality.phantom import write_bids_phantom

#: two full participant runs of four subjects: the long tier (the fast tier's end-to-end run is
#: tests/test_quick_app.py)
pytestmark = pytest.mark.slow

SPACE = "MNI152NLin2009aSym"  # nilearn's template: TEMPLATEFLOW_HOME is empty in the test
IMAGE_KEYS = {"SkullStripped", "Resolution", "Sources", "Description", "INR", "RawSources",
              "InputVoxelSize", "InputSliceAxis"}
INR_KEYS = {"Parameters", "RandomSeed", "Device", "EpochsRun", "SelectedEpoch", "FitSeconds",
            "SoftwareVersions", "StopReason"}


def expected_files(prefix: str, folder: str) -> set[str]:
    names = {f"{prefix}_space-{SPACE}_res-2_desc-superres_{c}.{e}"
             for c in ("T1w", "FLAIR") for e in ("nii.gz", "json")}
    names |= {f"{prefix}_space-{SPACE}_res-2_desc-brain_mask.{e}" for e in ("nii.gz", "json")}
    names |= {f"{prefix}_from-{c}_to-{SPACE}_mode-image_xfm.mat" for c in ("T1w", "FLAIR")}
    names |= {f"{prefix}_desc-superres_{s}" for s in ("metrics.tsv", "metrics.json",
                                                       "model.pt", "model.json",
                                                       "history.tsv")}
    return {f"{folder}/{n}" for n in names}


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    bids_dir, output_dir, work_dir = root / "bids", root / "out", root / "work"
    write_bids_phantom(str(bids_dir), subjects=(("01", None, False), ("02", "01", True)))
    # sub-03: a T1w only
    single = bids_dir / "sub-03" / "anat"
    single.mkdir(parents=True)
    source = bids_dir / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    (single / "sub-03_T1w.nii.gz").write_bytes(source.read_bytes())
    (single / "sub-03_T1w.json").write_text(json.dumps({"MagneticFieldStrength": 3}))
    # sub-04: a T1w with NaN voxels (it crashed a node before the images were checked)
    broken = bids_dir / "sub-04" / "anat"
    broken.mkdir(parents=True)
    image = nib.load(source)
    data = np.asanyarray(image.dataobj).astype(np.float32)
    data[:2, :2, :2] = np.nan
    nib.Nifti1Image(data, image.affine).to_filename(broken / "sub-04_T1w.nii.gz")
    flair = bids_dir / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz"
    (broken / "sub-04_FLAIR.nii.gz").write_bytes(flair.read_bytes())
    for name in ("sub-04_T1w.json", "sub-04_FLAIR.json"):
        (broken / name).write_text(json.dumps({"MagneticFieldStrength": 3}))
    with open(bids_dir / "participants.tsv", "a") as handle:
        handle.write("sub-03\nsub-04\n")
    arguments = [str(bids_dir), str(output_dir), "participant", "-w", str(work_dir),
                 "--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--output-resolution", "2"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEMPLATEFLOW_HOME", str(root / "templateflow-empty"))
        first = main(arguments)
        fit_result = (work_dir / "mcinr_wf" / "sub_01_wf" / "superres_wf" / "fit"
                      / "result_fit.pklz")
        first_mtime = fit_result.stat().st_mtime_ns
        second = main(arguments)
    return {"bids": bids_dir, "out": output_dir, "work": work_dir, "codes": (first, second),
            "fit_mtimes": (first_mtime, fit_result.stat().st_mtime_ns)}


def test_exit_code_reports_the_skipped_subject(app_run):
    assert app_run["codes"] == (1, 1)
    assert not (app_run["out"] / "sub-03" / "anat").exists()
    assert not (app_run["out"] / "sub-04" / "anat").exists()
    assert not list((app_run["out"] / "sub-04").rglob("crash-*"))


def test_exact_output_files(app_run):
    out = app_run["out"]
    found = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
             and not {"log", "figures"} & set(p.relative_to(out).parts)
             and p.suffix != ".html"}
    expected = expected_files("sub-01", "sub-01/anat") | expected_files(
        "sub-02_ses-01", "sub-02/ses-01/anat") | {"dataset_description.json", ".bidsignore"}
    assert found == expected
    assert not list(out.rglob(".staging-*")) and not list(out.rglob(".tmp-*"))
    # every output honours the umask (they were 0600: a colleague could not read them)
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode)
             for p in out.rglob("*") if p.is_file()}
    assert {name for name, mode in modes.items() if mode != 0o666 & ~umask} == set()
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "mcinr-bids"
    assert (out / "sub-01" / "log").is_dir()


def test_sidecars(app_run):
    anat = app_run["out"] / "sub-02" / "ses-01" / "anat"
    sidecar = json.loads(
        (anat / f"sub-02_ses-01_space-{SPACE}_res-2_desc-superres_FLAIR.json").read_text())
    assert IMAGE_KEYS <= set(sidecar)
    assert INR_KEYS <= set(sidecar["INR"])
    assert sidecar["Sources"] == ["bids::sub-02/ses-01/anat/sub-02_ses-01_FLAIR.nii.gz"]
    assert sidecar["SkullStripped"] is True
    assert sidecar["InputSliceAxis"] in ("R", "L")
    assert sidecar["Resolution"].startswith("2 mm isotropic grid")
    assert sidecar["INR"]["EpochsRun"] >= 1 and sidecar["INR"]["FitSeconds"] > 0
    mask_meta = json.loads(
        (anat / f"sub-02_ses-01_space-{SPACE}_res-2_desc-brain_mask.json").read_text())
    assert "deepbet" in mask_meta["Description"]  # sub-02 has a skull
    mask_meta = json.loads((app_run["out"] / "sub-01" / "anat" /
                            f"sub-01_space-{SPACE}_res-2_desc-brain_mask.json").read_text())
    assert "skull-stripped input" in mask_meta["Description"]
    image = nib.load(anat / f"sub-02_ses-01_space-{SPACE}_res-2_desc-superres_FLAIR.nii.gz")
    assert image.header.get_zooms()[:3] == (2.0, 2.0, 2.0)
    assert int(image.header["sform_code"]) == 4


def test_layout_indexes_outputs(app_run):
    from bids import BIDSLayout

    layout = BIDSLayout(app_run["out"], validate=False)
    images = layout.get(desc="superres", extension=".nii.gz", space=SPACE)
    assert len(images) == 4
    assert {f.entities["suffix"] for f in images} == {"T1w", "FLAIR"}
    assert len(layout.get(suffix="mask", desc="brain", extension=".nii.gz")) == 2


def test_bids_validator_accepts_outputs(app_run):
    result = subprocess.run(["bids-validator-deno", str(app_run["out"]), "--format", "json"],
                            capture_output=True, text=True, check=False)
    issues = json.loads(result.stdout)["issues"]["issues"]
    errors = [(i["code"], i.get("location")) for i in issues if i["severity"] == "error"]
    assert errors == []


def test_outputs_land_on_the_template(app_run, tmp_path):
    template_mask = next((app_run["work"] / "templates").glob("*desc-brain_mask.nii.gz"))
    for path in app_run["out"].rglob("*desc-brain_mask.nii.gz"):
        image = nib.load(path)
        output = np.asanyarray(image.dataobj) > 0
        template = mask_on_grid(str(template_mask), image.shape, image.affine)
        dice = 2 * (output & template).sum() / (output.sum() + template.sum())
        assert dice >= 0.85, (path.name, dice)


def test_metrics_table(app_run):
    table = pd.read_csv(app_run["out"] / "sub-01" / "anat" / "sub-01_desc-superres_metrics.tsv",
                        sep="\t", na_values="n/a")
    assert set(table["measure"]) == {"resimulation_rmse", "resimulation_psnr",
                                     "mutual_information", "registration_template_dice",
                                     "registration_template_centre_distance_mm",
                                     "registration_template_outside_fraction",
                                     "registration_image_dice"}
    assert np.isfinite(table["value"]).all()
    # --sloppy with one thread found the template's brain (it once ended 58 mm off)
    checks = table.set_index("measure")["value"]
    assert checks["registration_template_dice"] >= 0.85
    assert checks["registration_template_centre_distance_mm"] <= 5.0
    assert checks["registration_template_outside_fraction"] == 0.0
    assert checks["registration_image_dice"] >= 0.85  # the FLAIR on the T1w
    psnr = table.loc[table["measure"] == "resimulation_psnr", "value"]
    assert len(psnr) == 2 and (psnr > 5).all()
    mutual = table.loc[table["measure"] == "mutual_information", "value"]
    assert len(mutual) == 1 and float(mutual.iloc[0]) > 0.1


def test_rerun_reuses_the_cached_fit(app_run):
    first, second = app_run["fit_mtimes"]
    assert first == second


def test_group_level_reads_only_derivatives(app_run, tmp_path):
    code = main([str(tmp_path / "raw-data-gone"), str(app_run["out"]), "group"])
    assert code == 0
    table = pd.read_csv(app_run["out"] / "group_desc-superres_metrics.tsv", sep="\t")
    assert set(table["participant_id"]) == {"sub-01", "sub-02"}
    assert set(table.loc[table["participant_id"] == "sub-02", "session_id"]) == {"ses-01"}
    qc = pd.read_csv(app_run["out"] / "group_desc-qc_metrics.tsv", sep="\t")
    assert list(qc["participant_id"]) == ["sub-01", "sub-02"]
    assert set(qc["qc"]) == {"PASS"} and set(qc["registration"]) == {"PASS"}
    assert set(qc["stop_reason"]) <= {"epochs", "early stopping"}


def test_participant_report(app_run):
    out = app_run["out"]
    for subject, label in (("sub-01", "sub-01"), ("sub-02", "sub-02_ses-01")):
        page = (out / f"{subject}.html").read_text()
        figures = out / subject / "figures"
        for contrast in ("T1w", "FLAIR"):
            name = f"{label}_desc-superres_{contrast}.svg"
            assert (figures / name).stat().st_size > 1000
            assert f'src="{subject}/figures/{name}"' in page
        for name in (f"{label}_desc-curves_history.svg", f"{label}_desc-brain_mask.svg",
                     f"{label}_desc-profile_plot.svg",
                     f"{label}_desc-residual_map.svg", f"{label}_desc-template_T1w.svg"):
            assert (figures / name).stat().st_size > 1000 and name in page
        assert "<script" not in page and "http://" not in page and "https://" not in page
        assert "MICCAI 2023" in page and "resimulation_psnr" in page
        assert re.search(r"Registration checks: <strong class=\"pass\">PASS</strong> \("
                         r"reference brain on the template&#x27;s: Dice 0\.(8[5-9]|9\d)", page)
        assert re.search(r"\d+ epochs \(selected epoch \d+, stopped by [a-z ]+\), \d+ s of "
                         r"fitting on cpu", page)
        # every image the page refers to exists
        for source in re.findall(r'src="([^"]+)"', page):
            assert (out / source).is_file(), source

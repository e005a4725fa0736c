"""The unpaired cohort method through the BIDS App: the group level trains one model per
contrast, the participant level applies them (``--method unpaired``), the evaluation mode
scores them beside clamped cubic and JTV."""

from __future__ import annotations

import json

import nibabel as nib
import pandas as pd
import pytest

from mcinr_bids.cli.run import main
from mcinr_bids.quality.phantom import write_bids_phantom

#: end-to-end runs of the app: the long tier (pytest -m slow; .ci/run runs both)
pytestmark = pytest.mark.slow


def test_unpaired_method_through_the_app(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow-empty"))
    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    write_bids_phantom(str(bids), subjects=(("01", None, False), ("02", None, False)),
                       resolution=3.0, factor=3)
    participant = [str(bids), str(out), "participant", "-w", str(work), "--method", "unpaired",
                   "--sloppy", "--participant-label", "01", "--output-space", "native",
                   "--output-resolution", "3", "--nprocs", "2", "--omp-nthreads", "1"]
    # no model yet: one clear error naming the fix, exit 2, nothing in the output folder
    assert main(participant) == 2
    error = capsys.readouterr().err
    assert "no unpaired model for T1w" in error and "group --train-unpaired" in error
    assert not out.exists() or not list(out.iterdir())

    assert main([str(bids), str(out), "group", "-w", str(work), "--train-unpaired", "--sloppy",
                 "--omp-nthreads", "1", "--evaluate-ablation"]) == 0
    models = out / "models"
    assert {p.name for p in models.iterdir()} == {
        f"desc-{variant}_{contrast}.{extension}" for variant in ("unpaired", "unpairednocontrast")
        for contrast in ("T1w", "FLAIR") for extension in ("pt", "json")}
    record = json.loads((models / "desc-unpaired_T1w.json").read_text())
    assert record["Training"]["low"] == ["sub-01/anat/sub-01_T1w.nii.gz",
                                         "sub-02/anat/sub-02_T1w.nii.gz"]
    assert record["SliceFactor"] == 3 and record["Parameters"]["weight_contrastive"] == 1.0
    assert json.loads((models / "desc-unpairednocontrast_T1w.json").read_text())[
        "Parameters"]["weight_contrastive"] == 0.0
    assert not list((work / "unpaired").glob("*.resume.pt"))  # removed when training ended

    assert main(participant) == 0
    anat = out / "sub-01" / "anat"
    outputs = sorted(p.name for p in anat.glob("*desc-unpaired_*.nii.gz"))
    assert outputs == ["sub-01_space-T1w_res-3_desc-unpaired_FLAIR.nii.gz",
                       "sub-01_space-T1w_res-3_desc-unpaired_T1w.nii.gz"]
    assert not list(anat.glob("*desc-superres*")) and not list(anat.glob("*model*"))
    image = nib.load(anat / outputs[1])
    assert image.shape == nib.load(anat / "sub-01_space-T1w_res-3_desc-brain_mask.nii.gz").shape
    sidecar = json.loads((anat / outputs[1].replace(".nii.gz", ".json")).read_text())
    assert sidecar["Unpaired"]["Models"] == ["desc-unpaired_T1w.pt", "desc-unpaired_FLAIR.pt"]
    assert "unpaired contrastive" in sidecar["Description"]
    report = (out / "sub-01" / "figures" / "sub-01_report.html").read_text()
    assert "Cohort-trained unpaired models" in report and "Li et al." in report
    assert main([str(bids), str(out), "group"]) == 0
    group = pd.read_csv(out / "group_desc-superres_metrics.tsv", sep="\t")
    assert set(group["method"]) == {"unpaired"}

    # the evaluation mode scores both variants beside clamped cubic and JTV
    iso, evaluation = tmp_path / "iso", tmp_path / "evaluation"
    write_bids_phantom(str(iso), subjects=(("01", None, False),), resolution=3.0, factor=1,
                       motion_degrees=0.0)
    assert main([str(iso), str(evaluation), "participant", "-w", str(tmp_path / "work2"),
                 "--simulate-lowres", "T1w:S", "FLAIR:R", "--simulate-factor", "3",
                 "--simulate-protocol", "thick", "--output-space", "native",
                 "--output-resolution", "3", "--method", "unpaired", "--unpaired-models",
                 str(models), "--sloppy", "--nprocs", "2", "--omp-nthreads", "1"]) == 0
    table = pd.read_csv(evaluation / "sub-01" / "anat" / "sub-01_desc-unpaired_metrics.tsv",
                        sep="\t", na_values="n/a")
    strict = table[table["measure"] == "psnr_strict"]
    assert set(strict["method"]) == {"unpaired", "unpaired-nocontrast", "cubic-clamped", "jtv"}
    assert strict["value"].notna().all() and (strict["value"] > 10).all()

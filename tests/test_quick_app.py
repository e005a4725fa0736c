"""The fast tier's end-to-end run of the BIDS App: one skull-stripped subject, `--sloppy`, one
process, native space at 3 mm. The full checks (four subjects, the template space, the rerun,
the validator, the report) are the long tier's (tests/test_bids_app.py)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd

from mcinr_bids.cli.run import main
from mcinr_bids.quality.phantom import write_bids_phantom


def test_one_subject_end_to_end(tmp_path, monkeypatch):
    bids, output = tmp_path / "bids", tmp_path / "out"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=3.0)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow-empty"))
    code = main([str(bids), str(output), "participant", "-w", str(tmp_path / "work"),
                 "--sloppy", "--nprocs", "1", "--omp-nthreads", "1", "--output-space",
                 "native", "--output-resolution", "3", "--skip-bids-validation"])
    assert code == 0
    anat = output / "sub-01" / "anat"
    outputs = {c: anat / f"sub-01_space-T1w_res-3_desc-superres_{c}.nii.gz"
               for c in ("T1w", "FLAIR")}
    for contrast, path in outputs.items():
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
        assert np.allclose(nib.affines.voxel_sizes(image.affine), 3.0)
        assert np.isfinite(data).all() and data.max() > 0
        sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["Sources"] == [f"bids::sub-01/anat/sub-01_{contrast}.nii.gz"]
        assert sidecar["INR"]["EpochsRun"] == 3  # --sloppy
        # thick 2D slices: the recipe ran the slab model and said why
        assert sidecar["INR"]["Recipe"]["slab model"] == {
            "On": True, "Value": True, "Why": "the inputs are thick 2D slices",
            "Switch": "[inr] psf"}
    metrics = pd.read_csv(anat / "sub-01_desc-superres_metrics.tsv", sep="\t")
    assert {"resimulation_psnr", "registration_image_dice"} <= set(metrics["measure"])
    dice = metrics.loc[metrics["measure"] == "registration_image_dice", "value"]
    assert (dice >= 0.85).all()  # the FLAIR (moved 4 degrees) registered onto the T1w
    report = (output / "sub-01.html").read_text()
    assert '<strong class="pass">PASS</strong>' in report
    assert "<h3>Recipe</h3>" in report and "<td>slab model</td><td>on</td>" in report

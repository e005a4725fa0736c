"""mcinr-fit and mcinr-evaluate end to end on the phantom."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.cli import evaluate as evaluate_cli
from mcinr_bids.cli import fit as fit_cli
from mcinr_bids.config import AppConfig, share_execution
from mcinr_bids.methods.inr.settings import INRSettings, settings_for_preset

from .conftest import write_nifti


def test_fit_writes_every_output(tmp_path, low_resolution_files, capsys):
    out = tmp_path / "out"
    code = fit_cli.main([*low_resolution_files, "-o", str(out), "--epochs", "3", "--quiet",
                         "--resolution", "1.5"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    expected = {"sub-01_T1w_desc-superres.nii.gz", "sub-01_FLAIR_desc-superres.nii.gz",
                "desc-brain_mask.nii.gz", "model.pt", "history.tsv", "parameters.json",
                "metrics.tsv", "sub-01_T1w_residual.nii.gz", "sub-01_FLAIR_residual.nii.gz"}
    assert {p.name for p in out.iterdir()} == expected  # no temporary files left behind
    image = nib.load(out / "sub-01_T1w_desc-superres.nii.gz")
    np.testing.assert_allclose(image.header.get_zooms(), [1.5, 1.5, 1.5])
    assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
    assert image.get_data_dtype() == np.float32
    low = nib.load(low_resolution_files[0]).get_fdata()
    assert 0.5 * low.max() < image.get_fdata().max() < 1.5 * low.max()
    with open(out / "history.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 3 and float(rows[0]["loss_sub-01_T1w"]) > 0
    parameters = json.loads((out / "parameters.json").read_text())
    assert parameters["settings"]["epochs"] == 3 and parameters["device"] == "cpu"
    assert parameters["fit_seconds"] > 0 and "torch" in parameters["software"]
    # the recipe the fit ran (decimated inputs, box profile: point model, thick slices)
    assert parameters["recipe"]["slab model"]["On"] is True


def test_fit_on_a_reference_grid(tmp_path, low_resolution_files, phantom):
    reference = write_nifti(tmp_path / "ref.nii.gz", phantom[0], phantom[3])
    out = tmp_path / "out"
    assert fit_cli.main([*low_resolution_files, "-o", str(out), "--epochs", "1", "--quiet",
                         "--reference", reference, "--model", "vanilla"]) == 0
    image = nib.load(out / "sub-01_FLAIR_desc-superres.nii.gz")
    assert image.shape == phantom[0].shape
    np.testing.assert_allclose(image.affine, phantom[3])


def test_evaluate_writes_a_table(tmp_path, phantom, capsys):
    t1, flair, _, affine = phantom
    images = [write_nifti(tmp_path / "t1.nii.gz", t1, affine),
              write_nifti(tmp_path / "flair.nii.gz", flair, affine)]
    out = tmp_path / "evaluation"
    config = tmp_path / "short_network.toml"  # the default through-plane network, cut short
    config.write_text("[inr.advanced]\nthrough_plane_steps = 20\n")
    code = evaluate_cli.main([*images, "--axes", "S", "R", "-o", str(out), "--epochs", "2",
                              "--methods", "cubic", "cubic-clamped", "split", "--quiet",
                              "--config-file", str(config)])
    assert code == 0
    assert "| cubic-clamped |" in capsys.readouterr().out
    with open(out / "evaluation.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["method"] for r in rows] == ["cubic", "cubic-clamped", "split"]
    assert float(rows[1]["psnr_strict_t1"]) >= float(rows[0]["psnr_strict_t1"]) - 0.01
    assert float(rows[2]["fit_seconds"]) > 0
    assert "psnr_lesion_t1" not in rows[0]


def test_evaluate_scores_inside_a_lesion_mask(tmp_path, phantom, capsys):
    from mcinr_bids.quality.phantom import phantom_labels

    t1, flair, _, affine = phantom
    images = [write_nifti(tmp_path / "t1.nii.gz", t1, affine),
              write_nifti(tmp_path / "flair.nii.gz", flair, affine)]
    lesion = write_nifti(tmp_path / "lesion.nii.gz",
                         (phantom_labels(t1.shape, seed=1) == 4).astype(np.uint8), affine)
    out = tmp_path / "evaluation"
    code = evaluate_cli.main([*images, "--axes", "S", "R", "-o", str(out), "--methods",
                              "cubic", "cubic-clamped", "--lesion-mask", lesion, "--quiet"])
    assert code == 0
    assert "PSNR lesion t1" in capsys.readouterr().out
    with open(out / "evaluation.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        for name in ("t1", "flair"):
            assert 5 < float(row[f"psnr_lesion_{name}"]) < 60
            assert 0 < float(row[f"ssim_lesion_{name}"]) <= 1
    # a lesion outside the brain is refused with the file's name
    outside = np.zeros(t1.shape, np.uint8)
    outside[0, 0, 0] = 1
    stray = write_nifti(tmp_path / "stray.nii.gz", outside, affine)
    assert evaluate_cli.main([*images, "--axes", "S", "R", "-o", str(tmp_path / "other"),
                              "--methods", "cubic", "--lesion-mask", stray, "--quiet"]) == 2
    assert "stray.nii.gz: the lesion lies outside" in capsys.readouterr().err


def test_settings_round_trip_through_toml(tmp_path):
    config = AppConfig(inr=settings_for_preset("paper", seed=3))
    config.workflow.preset = "paper"
    config.execution.random_seed = 3
    share_execution(config)  # as resolve_config does
    path = config.save(tmp_path / "mcinr.toml")
    assert AppConfig.load(path) == config
    # the research knobs in their sub-table; the seed once, in [execution]
    text = path.read_text()
    assert "[inr.advanced]\n" in text and "trunk_width = 1024" in text.split("[inr.advanced]")[1]
    assert "seed = " not in text.replace("random_seed = 3", "")


def test_paper_preset_is_table_3():
    paper = settings_for_preset("paper")
    assert (paper.encoding, paper.fourier_features, paper.fourier_scale) == ("fourier", 256, 4.0)
    assert (paper.trunk_layers, paper.trunk_width, paper.head_layers, paper.head_width) == (
        5, 1024, 2, 512)
    assert (paper.batch_size, paper.learning_rate, paper.epochs) == (1000, 4e-4, 50)
    with pytest.raises(ValueError):
        INRSettings.from_dict({"no_such_setting": 1})


def test_the_readme_demo_beats_interpolation(tmp_path, capsys):
    """``mcinr-demo`` (the README's first command): thick-slice phantom inputs, 1 mm outputs,
    and the INR above clamped cubic splines on both contrasts (8 epochs, ~40 s)."""
    import re

    from mcinr_bids.cli import demo

    assert demo.main([str(tmp_path / "demo"), "--epochs", "8"]) == 0
    printed = capsys.readouterr().out
    scores = re.findall(r"(sub-demo_\w+): INR ([\d.]+), clamped cubic ([\d.]+)", printed)
    assert [name for name, _, _ in scores] == ["sub-demo_T1w", "sub-demo_FLAIR"], printed
    for name, inr, cubic in scores:
        assert float(inr) > float(cubic) + 1.5, (name, inr, cubic)
        assert (tmp_path / "demo" / "superres" / f"{name}_desc-superres.nii.gz").exists()

"""The unpaired contrastive cohort method (seed 003): its pieces on hand-made inputs, a tiny
training run, inference geometry, the model file, and the app's group and participant levels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mcinr_bids.core import geometry
from mcinr_bids.core.interpolation import cubic_on_grid
from mcinr_bids.core.volumes import Volume
from mcinr_bids.methods.unpaired.apply import refined_affine, superresolve_volume, unpaired_on_grid
from mcinr_bids.methods.unpaired.data import (
    PlaneBank,
    degrade,
    fine_planes,
    slice_factor,
    upsample,
)
from mcinr_bids.methods.unpaired.model import adversarial_loss, info_nce
from mcinr_bids.methods.unpaired.settings import UnpairedSettings
from mcinr_bids.methods.unpaired.train import load_unpaired, train_unpaired, write_model
from mcinr_bids.quality import metrics, simulation

TINY = {"steps": 60, "channels": 12, "blocks": 1, "batch": 4, "patch": 24, "log_every": 15,
        "checkpoint_every": 10, "device": "cpu", "threads": 1}


def test_info_nce_is_minimal_for_identical_positives():
    torch.manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(2, 16, 8), dim=-1)
    same = float(info_nce(keys, keys, 0.07))
    shuffled = float(info_nce(keys[:, torch.randperm(16)], keys, 0.07))
    assert same < 0.5 < shuffled
    # orthonormal unit vectors as their own positives: the cross-entropy's lower bound
    eye = torch.eye(8)[None]
    expected = np.log(1 + 7 * np.exp(-1 / 0.5))
    assert float(info_nce(eye, eye, 0.5)) == pytest.approx(expected, rel=1e-5)


def test_least_squares_gan_losses():
    scores = torch.tensor([0.0, 1.0, 2.0])
    assert float(adversarial_loss(scores, True)) == pytest.approx((1 + 0 + 1) / 3)
    assert float(adversarial_loss(scores, False)) == pytest.approx((0 + 1 + 4) / 3)


def test_acquisition_model_along_the_rows():
    rows = torch.arange(16, dtype=torch.float32)[None, None, :, None].expand(1, 1, 16, 3)
    box = degrade(rows, 4, "box")
    np.testing.assert_allclose(box[0, 0, :, 0].numpy(), [1.5, 5.5, 9.5, 13.5])
    point = degrade(rows, 4, "point")
    np.testing.assert_allclose(point[0, 0, :, 0].numpy(), [2, 6, 10, 14])
    # cubic upsampling puts each slab's value at its centre: a ramp comes back exactly where
    # the 4-tap stencil lies inside the image (the ends repeat the end slabs)
    long = torch.arange(32, dtype=torch.float32)[None, None, :, None]
    for profile in ("box", "point"):
        again = upsample(degrade(long, 4, profile), 4, profile)[0, 0, :, 0].numpy()
        np.testing.assert_allclose(again[8:24], np.arange(8, 24), atol=1e-4)


def test_refined_grid_keeps_world_coordinates():
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    affine[:3, 3] = [10.0, -5.0, 2.0]
    refined = refined_affine(affine, 2, 4, 1.5)
    # refined voxel 1.5 + 4 j is the centre of LR slice j; its spacing is 1 mm
    for j in range(3):
        np.testing.assert_allclose(refined @ [0, 0, 1.5 + 4 * j, 1], affine @ [0, 0, j, 1])
    np.testing.assert_allclose(geometry.voxel_sizes(refined), [1, 1, 1])


def test_hr_domain_leaves_out_axes_without_detail(phantom):
    t1, _, mask, affine = phantom
    # interpolated from 4 mm slices along axis 2: planes containing that axis are not HR
    low, low_affine = simulation.thick_slices(t1, affine, 2, 4)
    blurred = cubic_on_grid(low, low_affine, t1.shape, affine)
    planes = fine_planes(Volume(blurred, affine), mask > 0)
    assert len(planes) == t1.shape[2] and planes[0].shape == t1.shape[:2]
    assert len(fine_planes(Volume(t1, affine), mask > 0)) == sum(t1.shape)
    thick = fine_planes(Volume(low.astype(np.float32), low_affine))  # in-plane slices
    assert len(thick) == low.shape[2]
    assert slice_factor(Volume(low, low_affine)) == 4


def test_patches_are_mostly_foreground():
    plane = np.zeros((40, 40), np.float32)
    plane[10:30, 10:30] = 1.0
    bank = PlaneBank([plane], 8, 8, transpose=True)
    patches = bank.sample(20, np.random.default_rng(0))
    assert patches.shape == (20, 8, 8)
    assert np.mean([(p > 0.1).mean() >= 0.3 for p in patches]) > 0.9


@pytest.fixture(scope="module")
def thick_cohort(phantom):
    """LR: the phantom's T1 in 4 mm slices along S; HR: another phantom's isotropic T1."""
    from mcinr_bids.quality.phantom import make_phantom

    t1, _, mask, affine = phantom
    low, low_affine = simulation.thick_slices(t1, affine, geometry.voxel_axis(affine, "S"), 4)
    other = make_phantom(shape=(48, 48, 40), seed=2)[0]
    return (Volume(low.astype(np.float32), low_affine, name="t1"),
            Volume(other.astype(np.float32), affine, name="other"), t1, mask, affine)


def test_tiny_training_run_learns_and_resumes_exactly(thick_cohort, tmp_path, monkeypatch):
    low, high, truth, mask, affine = thick_cohort
    settings = UnpairedSettings(**TINY)
    trained = train_unpaired([low], [high], settings, contrast="T1w")
    history = pd.DataFrame(trained.history)
    assert list(history["step"]) == [15, 30, 45, 60]
    for loss in ("loss_cycle", "loss_contrastive"):
        assert history[loss].iloc[-1] < 0.8 * history[loss].iloc[0], history[loss]
    assert trained.training["data_hash"] and trained.training["lr_planes"] > 0
    # killed after step 25: the rerun continues from the step-20 state to the same weights
    resume = tmp_path / "resume.pt"
    from mcinr_bids.methods.unpaired import data as unpaired_data

    calls = {"n": 0}
    original = unpaired_data.PlaneBank.sample

    def dying(self, count, rng):
        calls["n"] += 1
        if calls["n"] > 50:  # two samples per step: step 26
            raise KeyboardInterrupt
        return original(self, count, rng)

    monkeypatch.setattr(unpaired_data.PlaneBank, "sample", dying)
    with pytest.raises(KeyboardInterrupt):
        train_unpaired([low], [high], settings, contrast="T1w", resume_file=str(resume))
    assert resume.exists()
    monkeypatch.setattr(unpaired_data.PlaneBank, "sample", original)
    resumed = train_unpaired([low], [high], settings, contrast="T1w", resume_file=str(resume))
    assert resumed.resumed_from_step == 20 and not resume.exists()
    for first, second in zip(trained.generator.state_dict().values(),
                             resumed.generator.state_dict().values()):
        torch.testing.assert_close(first, second)


def test_inference_grid_and_model_file(thick_cohort, tmp_path):
    low, high, truth, mask, affine = thick_cohort
    trained = train_unpaired([low], [high], UnpairedSettings(**{**TINY, "steps": 10}),
                             contrast="T1w")
    image, refined = superresolve_volume(trained, low)
    axis = geometry.thick_axis(low.affine)
    assert image.shape[axis] == 4 * low.shape[axis] and image.dtype == np.float32
    assert low.data.min() <= image.min() and image.max() <= low.data.max()
    # each refined voxel sits where the LR grid says: slab j's centre is refined voxel 1.5 + 4j
    np.testing.assert_allclose(refined @ [0, 0, 1.5, 1], low.affine @ [0, 0, 0, 1])
    path, sidecar = write_model(trained, str(tmp_path / "models" / "desc-unpaired_T1w.pt"))
    record = json.loads(open(sidecar).read())
    assert record["Contrast"] == "T1w" and record["SliceFactor"] == 4
    assert record["Training"]["data_hash"] == trained.training["data_hash"]
    assert record["Parameters"]["steps"] == 10 and record["LossesPerLog"]
    assert {"mcinr-bids", "torch"} <= set(record["SoftwareVersions"])
    torch.load(path, weights_only=True)  # no pickled code
    loaded = load_unpaired(path, device="cpu")
    np.testing.assert_array_equal(superresolve_volume(loaded, low)[0], image)
    on_grid = unpaired_on_grid(loaded, low, truth.shape, affine)
    assert on_grid.shape == truth.shape
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="broken.pt: not a readable unpaired model"):
        load_unpaired(str(tmp_path / "broken.pt"))


def test_a_short_training_beats_clamped_cubic(thick_cohort):
    """A few hundred steps on one other subject's isotropic T1: the held-out thick T1 comes
    out closer to its truth than clamped cubic splines."""
    low, high, truth, mask, affine = thick_cohort
    settings = UnpairedSettings(**{**TINY, "steps": 150, "channels": 16, "blocks": 2,
                                   "batch": 8, "patch": 32, "log_every": 50})
    trained = train_unpaired([low], [high], settings, contrast="T1w")
    output = unpaired_on_grid(trained, low, truth.shape, affine)
    cubic = cubic_on_grid(low.data, low.affine, truth.shape, affine)
    inside = mask > 0
    gain = metrics.psnr(output, truth, inside, "strict") - metrics.psnr(cubic, truth, inside,
                                                                         "strict")
    assert gain > 0.1, gain


def test_the_group_level_trains_one_model_per_contrast(tmp_path, monkeypatch):
    """`group --train-unpaired` (the fast tier's run of the group training; applying the
    models through the app is the long tier's tests/test_unpaired_app.py)."""
    import json

    from mcinr_bids.cli.run import main
    from mcinr_bids.quality.phantom import write_bids_phantom

    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow-empty"))
    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    write_bids_phantom(str(bids), subjects=(("01", None, False), ("02", None, False)),
                       resolution=3.0, factor=3)
    assert main([str(bids), str(out), "group", "-w", str(work), "--train-unpaired",
                 "--sloppy", "--omp-nthreads", "1", "--skip-bids-validation"]) == 0
    models = out / "models"
    assert {p.name for p in models.iterdir()} == {
        f"desc-unpaired_{contrast}.{extension}" for contrast in ("T1w", "FLAIR")
        for extension in ("pt", "json")}
    record = json.loads((models / "desc-unpaired_FLAIR.json").read_text())
    assert record["Training"]["low"] == ["sub-01/anat/sub-01_FLAIR.nii.gz",
                                         "sub-02/anat/sub-02_FLAIR.nii.gz"]
    assert record["SliceFactor"] == 3
    assert not list((work / "unpaired").glob("*.resume.pt"))

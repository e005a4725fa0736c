"""The slab (slice-profile) forward model in the fit: random and stratified points across each
LR voxel's slice profile, the slab loss, and the warm start (``psf_epochs``)."""

import dataclasses

import numpy as np
import pytest
import torch

from mcinr_bids.core.geometry import world_coordinates
from mcinr_bids.core.volumes import Volume
from mcinr_bids.methods.inr import fit_inr
from mcinr_bids.methods.inr.settings import settings_for_preset


def test_psf_model_explains_thick_slices_through_its_slice_profile(phantom):
    """With --psf the mean prediction over each LR voxel's slice profile reproduces the thick
    slices better than the prediction at the voxel centre does.  Feature diffusion is off: it
    smooths the representation whatever the forward model, and this test is about the latter."""
    from mcinr_bids.core.geometry import FWHM_TO_SIGMA
    from mcinr_bids.quality import simulation

    t1, flair, mask, affine = phantom
    low = [simulation.thick_slices(t1, affine, 2, 4, profile="gaussian"),
           simulation.thick_slices(flair, affine, 0, 4, profile="gaussian")]
    volumes = [Volume(d, a, n) for (d, a), n in zip(low, ["t1", "flair"])]
    fitted = fit_inr(volumes, settings_for_preset("fast", epochs=20, psf=True, psf_samples=4,
                                                  psf_profile="gaussian", psf_sampling="random",
                                                  early_stopping=False, feature_diffusion=0.0))
    data, low_affine = low[0]
    inside = data > 0.2 * data.max()
    centres = world_coordinates(low_affine, np.argwhere(inside))
    rng = np.random.default_rng(0)
    offsets = rng.standard_normal((64, 3)) * FWHM_TO_SIGMA @ low_affine[:3, :3].T
    blurred = np.mean([fitted.predict(centres + o)[:, 0] for o in offsets], axis=0)
    point = fitted.predict(centres)[:, 0]
    truth = data[inside]
    assert np.mean((blurred - truth) ** 2) < np.mean((point - truth) ** 2)


def test_stratified_box_profile_is_a_fixed_quadrature_of_the_slab():
    """psf_sampling 'stratified': each LR voxel's value is the mean of the model at the K
    midpoints of equal parts of its slab (the same points every step, JTV's forward model),
    not at random points; it needs the box profile."""
    from mcinr_bids.methods.inr.model import build_model
    from mcinr_bids.methods.inr.slab import TrainingData, predict_samples

    settings = settings_for_preset("fast", psf=True, psf_profile="box", psf_samples=4,
                                   psf_sampling="stratified")
    model = build_model(1, settings, np.array([40.0, 40.0, 40.0]), seed=0)
    coordinates = torch.rand(5, 3) * 1.6 - 0.8
    thickness = 0.2  # normalised units along the third axis
    data = TrainingData(coordinates=coordinates, values=torch.zeros(5),
                        image_index=torch.zeros(5, dtype=torch.int64),
                        image_weight=torch.ones(1),
                        profile=torch.diag(torch.tensor([0.0, 0.0, thickness]))[None])
    batch = torch.arange(5)
    with torch.no_grad():
        first = predict_samples(model, data, batch, settings, use_bf16=False)
        second = predict_samples(model, data, batch, settings, use_bf16=False)
        points = [coordinates + torch.tensor([0.0, 0.0, thickness * z])
                  for z in (-0.375, -0.125, 0.125, 0.375)]
        expected = torch.stack([model(p)[:, 0] for p in points])
    assert first.shape == (4, 5)
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, expected)
    with pytest.raises(ValueError, match="stratified.*psf_sampling = 'random'"):
        settings_for_preset("fast", psf=True, psf_profile="gaussian")


def test_warm_start_fits_the_slab_model_in_the_last_epochs_only(low_resolution):
    """psf_epochs: the point model first, then the slab model for the last N epochs with the
    learning rate's cosine restarted at the switch; MI selects only among the slab epochs."""
    from mcinr_bids.methods.inr.model import build_model
    from mcinr_bids.methods.inr.slab import TrainingData, predict_samples

    settings = settings_for_preset("fast", psf=True, psf_profile="box", psf_samples=2,
                                   psf_sampling="stratified", epochs=6, psf_epochs=2,
                                   min_epochs=2, mi_window=1, mi_tolerance=10.0)
    assert settings.point_epochs == 4
    assert [settings.slab_epoch(e) for e in range(1, 7)] == [False] * 4 + [True] * 2
    fitted = fit_inr([Volume(d, a, n) for (d, a), n in zip(low_resolution, ["t1", "flair"])],
                     settings)
    rates = [row["learning_rate"] for row in fitted.history]
    # a huge tolerance fires as soon as allowed: epoch 2 without the warm start, here 4 + 2
    assert len(rates) == fitted.selected_epoch == 6
    # the rate after each epoch: the point model's cosine near its end after epoch 3, back to
    # the full rate for the first slab step after epoch 4, annealed again to 0 after epoch 6
    assert rates[2] < 0.2 * settings.learning_rate
    assert rates[3] == pytest.approx(settings.learning_rate)
    assert rates[4] < rates[3] and rates[5] == pytest.approx(0.0, abs=1e-9)
    model = build_model(1, settings, np.array([40.0, 40.0, 40.0]), seed=0)
    data = TrainingData(coordinates=torch.zeros(3, 3), values=torch.zeros(3),
                        image_index=torch.zeros(3, dtype=torch.int64),
                        image_weight=torch.ones(1), profile=torch.eye(3)[None] * 0.1)
    with torch.no_grad():
        assert predict_samples(model, data, torch.arange(3), settings, False, slab=False
                               ).shape == (1, 3)
        assert predict_samples(model, data, torch.arange(3), settings, False).shape == (2, 3)
    with pytest.raises(ValueError, match="psf_epochs"):
        settings_for_preset("fast", psf_epochs=0)


def test_box_slice_profile_spans_the_slab_only():
    from mcinr_bids.core.slices import slice_profile_factors
    from mcinr_bids.core.volumes import CoordinateNormaliser, Volume

    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    volume = Volume(np.ones((10, 10, 5), np.float32), affine)
    normaliser = CoordinateNormaliser(low=np.zeros(3), high=np.array([10.0, 10.0, 20.0]))
    factors = slice_profile_factors([volume], [None], normaliser, "box")[0]
    # offsets = u @ L.T with u in [-1/2, 1/2]^3: +-2 mm along the thick axis (0.2 normalised),
    # nothing in plane
    np.testing.assert_allclose(factors, np.diag([0.0, 0.0, 4.0 * 2 / 20.0]), atol=1e-7)


def test_unbiased_slab_loss_is_the_squared_error_of_the_mean():
    from mcinr_bids.methods.inr.slab import slab_loss

    generator = torch.Generator().manual_seed(0)
    mean = torch.tensor([0.5, -1.0])
    # many draws of K = 2 residuals around a slab mean: the unbiased loss averages to mean^2,
    # the biased one adds the variance / K
    residuals = mean + torch.randn(200000, 2, 2, generator=generator)
    unbiased = torch.stack([slab_loss(r, True) for r in residuals[:20000]]).mean(0)
    biased = torch.stack([slab_loss(r, False) for r in residuals[:20000]]).mean(0)
    torch.testing.assert_close(unbiased, mean**2, atol=0.03, rtol=0)
    torch.testing.assert_close(biased, mean**2 + 0.5, atol=0.03, rtol=0)
    single = torch.tensor([[0.3, -0.2]])
    torch.testing.assert_close(slab_loss(single, True), single[0] ** 2)


def test_the_slab_model_is_automatic_on_thick_slices(phantom):
    """psf unset: thick slices (4 mm of 1 mm pixels) are fitted through the box profile with 2
    fixed points, with the consistency step but no blend, over the whole schedule; decimated data
    (point samples) and isotropic data with the point model; psf given is kept."""
    from mcinr_bids.quality import simulation

    t1, flair, mask, affine = phantom
    low = [simulation.thick_slices(t1, affine, 2, 4), simulation.thick_slices(flair, affine, 0, 4)]
    volumes = [Volume(d, a, n) for (d, a), n in zip(low, ["t1", "flair"])]
    settings = settings_for_preset("fast", epochs=2)
    assert settings.psf is None
    fitted = fit_inr(volumes, settings)
    used = fitted.settings
    assert (used.psf, used.psf_profile, used.psf_sampling, used.psf_samples,
            used.consistency_steps, used.blend_weight, used.early_stopping,
            used.selection) == (True, "box", "stratified", 2, 2, 0.0, False, "last")
    assert fitted.selected_epoch == 2
    summary = fitted.summary()
    assert (summary["psf"], summary["slab_points"], summary["consistency_steps"],
            summary["jtv_blend"]) == (True, 2, 2, 0.0)
    # 1 mm slices 4 mm apart (the sidecar's SliceThickness): point samples, no slab model
    thin = [dataclasses.replace(v, slice_thickness_mm=1.0) for v in volumes]
    assert fit_inr(thin, settings_for_preset("fast", epochs=1)).settings.psf is False
    isotropic = [Volume(t1, affine, "t1"), Volume(flair, affine, "flair")]
    point = fit_inr(isotropic, settings_for_preset("fast", epochs=1)).settings
    assert (point.psf, point.consistency_steps, point.blend_weight, point.early_stopping) == (
        False, 2, 0.5, True)
    assert fit_inr(volumes, settings_for_preset("fast", epochs=1, psf=False)).settings.psf \
        is False


def test_an_image_without_thick_slices_is_evaluated_once_per_voxel():
    """Mixed inputs (a 1 mm 3D image with thick 2D ones) under the slab model: the 3D image has
    no slab (a zero box profile), so its voxels are evaluated once, at the centre, and repeated
    K times; the thick image's K points are unchanged; the gradient reaches the model."""
    from mcinr_bids.core.slices import slice_profile_factors
    from mcinr_bids.core.volumes import CoordinateNormaliser
    from mcinr_bids.methods.inr.model import build_model
    from mcinr_bids.methods.inr.slab import TrainingData, predict_samples

    normaliser = CoordinateNormaliser(low=np.zeros(3), high=np.full(3, 40.0))
    thick = Volume(np.ones((40, 40, 10), np.float32), np.diag([1.0, 1.0, 4.0, 1.0]))
    iso = Volume(np.ones((40, 40, 40), np.float32), np.eye(4))
    profile = torch.from_numpy(slice_profile_factors([thick, iso], [None, None], normaliser,
                                                     "box"))
    assert profile[1].abs().max() == 0 and profile[0, 2, 2] == pytest.approx(0.2)
    settings = settings_for_preset("fast", psf=True, psf_samples=2)
    model = build_model(2, settings, np.full(3, 40.0), seed=0)
    coordinates = torch.rand(6, 3) * 1.6 - 0.8
    image = torch.tensor([1, 0, 1, 1, 0, 0])
    data = TrainingData(coordinates=coordinates, values=torch.zeros(6), image_index=image,
                        image_weight=torch.ones(2), profile=profile)
    evaluated = []
    model.register_forward_hook(lambda module, args, out: evaluated.append(len(args[0])))
    output = predict_samples(model, data, torch.arange(6), settings, use_bf16=False)
    assert evaluated == [2 * 3 + 3] and output.shape == (2, 6)
    with torch.no_grad():
        centre = model(coordinates)
        for k, z in enumerate((-0.25, 0.25)):
            shifted = model(coordinates + torch.tensor([0.0, 0.0, 0.2 * z]))
            expected = torch.where(image == 0, shifted[:, 0], centre[:, 1])
            torch.testing.assert_close(output[k], expected)
    output.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with torch.no_grad():  # a batch of the 3D image only, and of the thick one only
        for only in (torch.tensor([0, 2]), torch.tensor([1, 4])):
            assert predict_samples(model, data, only, settings, use_bf16=False).shape == (2, 2)

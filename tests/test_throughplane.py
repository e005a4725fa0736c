"""The self-supervised through-plane network (mcinr_bids.methods.inr.through_plane_network): its
degradation and
grids match the simulations, it learns detail that cubic splines miss, and the INR's output
blends it in."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mcinr_bids.core import geometry
from mcinr_bids.core.interpolation import cubic_on_grid
from mcinr_bids.core.volumes import Volume
from mcinr_bids.methods.inr.settings import INRSettings
from mcinr_bids.methods.inr.through_plane_network import (
    LAYERS,
    ResidualCNN,
    apply_across,
    degrade_rows,
    fine_affine,
    fine_grid,
    interpolate_rows,
    memory_format,
    plane_box,
    sample_positions,
    through_plane_image,
    train,
)
from mcinr_bids.quality import metrics, simulation


@pytest.mark.parametrize("protocol", ["decimate", "thick"])
def test_the_degradation_and_the_fine_grid_match_the_simulation(phantom, protocol):
    """Along the truth's own fine axis, the network's training degradation at the fine grid's
    phase equals the simulated acquisition; the fine grid lies on the output grid's voxels; its
    spline interpolation is the clamped-cubic baseline's."""
    t1, _, _, affine = phantom
    axis = geometry.voxel_axis(affine, "S")
    simulator = simulation.decimate if protocol == "decimate" else simulation.thick_slices
    low, low_affine = simulator(t1, affine, axis, 4)
    volume = Volume(low.astype(np.float32), low_affine, name="t1")
    found_axis, ratio, phase, length = fine_grid(volume, affine)
    assert (found_axis, ratio) == (axis, 4.0)
    assert phase == pytest.approx(-0.5 if protocol == "decimate" else -0.375)
    # every fine voxel is an output voxel
    fine = fine_affine(low_affine, axis, ratio, phase)
    indices = np.zeros((length, 3))
    indices[:, axis] = np.arange(length)
    on_output = geometry.apply_transform(np.linalg.inv(affine),
                                         geometry.world_coordinates(fine, indices))
    np.testing.assert_allclose(on_output, np.round(on_output), atol=1e-6)
    # the degradation of the truth's planes along the axis reproduces the acquisition
    start = int(round(on_output[0, axis]))
    planes = np.moveaxis(t1, axis, 1)[:, start:start + length].astype(np.float64)
    positions = sample_positions(length, ratio, -phase * ratio)
    width = 1.0 if protocol == "decimate" else 4.0
    samples = degrade_rows(planes, positions, "point" if protocol == "decimate" else "box",
                           width)
    np.testing.assert_allclose(samples, np.moveaxis(low, axis, 1)[:, :len(positions)],
                               rtol=1e-5, atol=1e-4)
    # the rows' spline is the baseline's cubic spline (clamped to the same range)
    stack = np.moveaxis(low, axis, 0)
    rows = interpolate_rows(stack.reshape(1, stack.shape[0], -1), -phase * ratio
                            + ratio * np.arange(stack.shape[0]), length, float(low.min()),
                            float(low.max())).reshape(length, *stack.shape[1:])
    baseline = np.moveaxis(cubic_on_grid(low, low_affine, t1.shape, affine), axis, 0)
    overlap = min(length, t1.shape[axis] - start)  # the fine grid covers the outer slabs
    np.testing.assert_allclose(rows[:overlap], baseline[start:start + overlap], rtol=1e-4,
                               atol=1e-3)


def test_the_network_restores_detail_that_cubic_splines_miss(phantom):
    """Trained only on the decimated image's own slices, the network's reconstruction across
    the thick axis is closer to the truth than clamped cubic splines."""
    torch.set_num_threads(2)
    t1, _, mask, affine = phantom
    axis = geometry.voxel_axis(affine, "S")
    low, low_affine = simulation.decimate(t1, affine, axis, 4)
    volume = Volume(low.astype(np.float32), low_affine, name="t1")
    low_mask = low > 0
    image = through_plane_image(volume, low_mask, "point", 300, (t1.shape, affine), seed=0)
    cubic = cubic_on_grid(low, low_affine, t1.shape, affine)
    inside = mask > 0
    gain = metrics.psnr(image, t1, inside, "strict") - metrics.psnr(cubic, t1, inside, "strict")
    assert gain > 1.0, gain
    assert image.dtype == np.float32 and image.shape == t1.shape


def test_the_inr_output_blends_the_network(phantom):
    """through_plane_weight: (1 - w) INR + w network inside the foreground for images with
    thick slices; 0 leaves the prediction alone; an image without thick slices is kept."""
    from mcinr_bids.methods.inr.postprocessing import blend_through_plane

    t1, flair, mask, affine = phantom
    low, low_affine = simulation.thick_slices(t1, affine, geometry.voxel_axis(affine, "S"), 4)
    volumes = [Volume(low.astype(np.float32), low_affine, name="t1"),
               Volume(flair.astype(np.float32), affine, name="flair")]  # isotropic
    predictions = [t1.astype(np.float32), flair.astype(np.float32)]
    masks = [v.data > 0 for v in volumes]

    def fitted(weight):
        settings = INRSettings(through_plane_weight=weight, through_plane_steps=5, seed=3)
        return SimpleNamespace(settings=settings, model=torch.nn.Linear(1, 1), masks=masks,
                               transforms=[None, None], names=["t1", "flair"],
                               through_plane_states={})

    grid = (t1.shape, affine)
    assert blend_through_plane(predictions, fitted(0.0), volumes, grid) is predictions
    inside = mask > 0
    blended = blend_through_plane(predictions, fitted(0.5), volumes, grid, inside)
    network = through_plane_image(volumes[0], masks[0], "box", 5, grid, seed=3,
                                  prior=predictions[0])
    np.testing.assert_allclose(blended[0][inside], (predictions[0][inside] + network[inside]) / 2,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(blended[0][~inside], predictions[0][~inside])
    np.testing.assert_array_equal(blended[1], predictions[1])
    with pytest.raises(ValueError, match="through_plane_weight must be between 0 and 1"):
        INRSettings(through_plane_weight=2.0).validate()
    # unset: the recipe decides (tests/test_recipe.py), off until it has; a value applies as given
    assert INRSettings().network_weight == 0.0
    assert INRSettings(through_plane_weight=0.0).network_weight == 0
    assert INRSettings(through_plane_weight=0.25).network_weight == 0.25


def test_slices_held_out_by_qc_holdout_are_not_training_targets(phantom, monkeypatch):
    """--qc-holdout interpolates every K-th acquired slice in the data; the network must not
    learn from those slices (the check would score it on slices it was trained to reproduce),
    while it trains on every other foreground slice."""
    from mcinr_bids.methods.inr import through_plane_network as throughplane
    from mcinr_bids.quality.holdout import hold_out

    t1, _, _, affine = phantom
    axis = geometry.voxel_axis(affine, "S")
    low, low_affine = simulation.thick_slices(t1, affine, axis, 4)
    volume = hold_out(Volume(low.astype(np.float32), low_affine, name="t1"), 3)
    held_axis, held = volume.held_out
    assert held_axis == axis and held.any() and (~held).sum() >= 2
    seen = {}

    def record(inputs, targets, weights, steps, seed, device):
        seen["weights"] = weights
        return throughplane.ResidualCNN()

    monkeypatch.setattr(throughplane, "train", record)
    through_plane_image(volume, volume.data > 0, "box", 1, (t1.shape, affine))
    for weights in seen["weights"]:  # both plane families: acquired slice first
        assert weights.shape[0] == len(held)
        assert not weights[held].any()
        assert all(weights[index].any() for index in np.flatnonzero(~held)
                   if np.take(volume.data, index, axis=axis).any())


def test_the_network_runs_only_round_the_foreground_with_the_same_result():
    """Inference inside the foreground's box (plus a margin of the network's reach) gives the
    whole-volume result there and leaves the volume unchanged outside it."""
    torch.manual_seed(0)
    network = ResidualCNN()
    volume = np.random.default_rng(0).random((20, 30, 26)).astype(np.float32)
    mask = np.zeros(volume.shape, bool)
    mask[3:9, 10:17, 8:12] = True
    box = plane_box(mask, LAYERS)
    assert box == (slice(10 - LAYERS, 17 + LAYERS), slice(max(0, 8 - LAYERS), 12 + LAYERS))
    assert plane_box(np.zeros_like(mask), 4) == (slice(None), slice(None))
    whole = apply_across(network, volume, torch.device("cpu"))
    cropped = apply_across(network, volume, torch.device("cpu"), box)
    np.testing.assert_allclose(cropped[:, 10:17, 8:12], whole[:, 10:17, 8:12], rtol=1e-5,
                               atol=1e-6)
    outside = np.ones(volume.shape, bool)
    outside[:, box[0], box[1]] = False
    np.testing.assert_array_equal(cropped[outside], volume[outside])
    assert not np.allclose(whole[outside], volume[outside])


def test_both_memory_layouts_train_and_restore_alike(monkeypatch):
    """The CPU runs the network channels-last (faster there), GPUs in the default layout: the
    same training steps and the same restored planes either way."""
    assert memory_format(torch.device("cpu")) == torch.channels_last
    assert memory_format(torch.device("meta")) == torch.contiguous_format
    rng = np.random.default_rng(1)
    inputs = [rng.random((3, 20, 24)).astype(np.float32)]
    targets = [rng.random((3, 20, 24)).astype(np.float32)]
    weights = [np.ones((3, 20, 24), bool)]
    networks = {}
    for layout in (torch.channels_last, torch.contiguous_format):
        monkeypatch.setattr("mcinr_bids.methods.inr.through_plane_network.memory_format",
                            lambda _, f=layout: f)
        networks[layout] = train(inputs, targets, weights, 5, 0, torch.device("cpu"))
    for name, value in networks[torch.channels_last].state_dict().items():
        np.testing.assert_allclose(value.numpy(),
                                   networks[torch.contiguous_format].state_dict()[name].numpy(),
                                   rtol=1e-4, atol=1e-6)
    monkeypatch.undo()
    volume = rng.random((12, 20, 18)).astype(np.float32)
    network = networks[torch.contiguous_format]
    with torch.no_grad():
        expected = sum(network(torch.from_numpy(np.ascontiguousarray(volume.transpose(order)))
                               [:, None])[:, 0].numpy().transpose(np.argsort(order))
                       for order in ((1, 0, 2), (2, 0, 1))) / 2
    np.testing.assert_allclose(apply_across(network, volume, torch.device("cpu")), expected,
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, volume, atol=1e-3)


def test_the_network_is_blended_after_the_consistency_step(phantom, decimated,
                                                           monkeypatch):
    """inr_output: the consistency step corrects the INR's prediction alone, then the network
    is averaged in (run on the network's output, the step spread its errors on the acquired
    slices into the gaps: -0.25 dB on gli decimation)."""
    from mcinr_bids.methods.inr import fit_inr, postprocessing, predict_on_grid
    from mcinr_bids.methods.inr import through_plane_network as module
    from mcinr_bids.methods.inr.consistency import back_project

    t1, _, _, affine = phantom
    volumes = decimated
    settings = INRSettings(epochs=1, seed=0, destripe=False)
    fitted = fit_inr(volumes, settings)
    assert fitted.settings.network_weight == pytest.approx(2 / 3)  # the recipe's, for points
    constant = {"t1": 11.0, "flair": 7.0}
    monkeypatch.setattr(module, "through_plane_image",
                        lambda volume, *args, **kwargs: np.full(t1.shape, constant[volume.name],
                                                                np.float32))
    grid = (t1.shape, affine)
    output, foreground = postprocessing.inr_output(fitted, grid, volumes)
    raw, _ = predict_on_grid(fitted, *grid)
    consistent = back_project(raw, grid, volumes, masks=fitted.masks,
                              transforms=fitted.transforms,
                              steps=settings.consistency_steps,
                              dilation_mm=settings.foreground_dilation_mm, foreground=foreground)
    for index, name in enumerate(("t1", "flair")):
        weight = fitted.settings.network_weight
        np.testing.assert_allclose(output[index][foreground],
                                   (1 - weight) * consistent[index][foreground]
                                   + weight * constant[name], rtol=1e-5, atol=1e-4)


def test_the_evaluation_scores_the_output_with_the_network(phantom, decimated,
                                                           monkeypatch):
    """The evaluation mode re-predicts a checkpoint on each truth's grid
    (evaluation.model_outputs): on decimated data that output must include the network's
    blend, as the app's output files do, or Table 1 scores something the user never gets."""
    import dataclasses

    import nibabel as nib

    from mcinr_bids.methods.inr import fit_inr, predict_on_grid
    from mcinr_bids.methods.inr import through_plane_network as module
    from mcinr_bids.quality.evaluation import model_outputs

    t1, flair, _, affine = phantom
    volumes = decimated
    fitted = fit_inr(volumes, INRSettings(epochs=1, seed=0,
                                          destripe=False))
    constant = {"t1": 11.0, "flair": 7.0}
    monkeypatch.setattr(module, "through_plane_image",
                        lambda volume, *args, **kwargs: np.full(t1.shape, constant[volume.name],
                                                                np.float32))
    truths = [nib.Nifti1Image(t1, affine), nib.Nifti1Image(flair, affine)]
    scored = model_outputs(fitted, truths, volumes)
    alone = model_outputs(dataclasses.replace(fitted, settings=dataclasses.replace(
        fitted.settings, through_plane_weight=0.0)), truths, volumes)
    _, foreground = predict_on_grid(fitted, t1.shape, affine, fill_background=False)
    for index, name in enumerate(("t1", "flair")):
        weight = fitted.settings.network_weight
        np.testing.assert_allclose(scored[index][foreground],
                                   (1 - weight) * alone[index][foreground]
                                   + weight * constant[name], rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(scored[index][~foreground], alone[index][~foreground])


def test_the_trained_network_is_kept_in_the_checkpoint_and_reused(phantom, decimated,
                                                                  monkeypatch, tmp_path):
    """Each image's network is trained once: another grid (the evaluation mode's truth grid, a
    checkpoint predicted later) reuses the fit's network from the checkpoint instead of
    training it again (~1.5 min an image on 2 cores), with the same result."""
    from mcinr_bids.methods.inr import fit_inr, load_checkpoint, postprocessing, save_checkpoint
    from mcinr_bids.methods.inr import through_plane_network as module

    t1, _, _, affine = phantom
    volumes = decimated
    fitted = fit_inr(volumes, INRSettings(epochs=1, seed=0,
                                          through_plane_steps=3))
    grid = (t1.shape, affine)
    first = postprocessing.network_image(fitted, 0, volumes[0], grid, None)
    assert set(fitted.through_plane_states) == {0}
    path = tmp_path / "model.pt"
    save_checkpoint(fitted, str(path))
    loaded = load_checkpoint(str(path), device="cpu")

    def no_training(*args, **kwargs):
        raise AssertionError("the network was trained again")

    monkeypatch.setattr(module, "train", no_training)
    again = postprocessing.network_image(loaded, 0, volumes[0], grid, None)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-4)
    # a coarser grid of the same world: the kept network, no training
    coarse = np.array(affine, dtype=float)
    coarse[:3, :3] *= 2
    image = postprocessing.network_image(loaded, 0, volumes[0],
                                   (tuple(s // 2 for s in t1.shape), coarse), None)
    assert image.shape == tuple(s // 2 for s in t1.shape) and np.isfinite(image).all()
    with pytest.raises(AssertionError, match="trained again"):
        postprocessing.network_image(loaded, 1, volumes[1], grid, None)


def test_the_network_restores_the_prior_too_and_averages(phantom):
    """With a prior (the INR's output on the grid) the result is the mean of the network's
    restorations of the cubic interpolation and of the prior: with a network that changes
    nothing, (clamped cubic + prior) / 2 where the grids agree; beyond the grid the prior
    covers, the cubic interpolation alone."""
    t1, _, _, affine = phantom
    axis = geometry.voxel_axis(affine, "S")
    low, low_affine = simulation.decimate(t1, affine, axis, 4)
    volume = Volume(low.astype(np.float32), low_affine, name="t1")
    identity = ResidualCNN()
    last = identity.body[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    state = dict(identity.state_dict())
    prior = (0.9 * t1 + 2.0).astype(np.float32)
    grid = (t1.shape, affine)
    image = through_plane_image(volume, low > 0, "point", 1, grid, state=state, prior=prior)
    cubic = cubic_on_grid(low, low_affine, t1.shape, affine)
    expected = np.clip((cubic + prior) / 2, low.min(), low.max())
    # between the first and the last acquired slice (beyond them the fine grid's spline and
    # the baseline's extrapolate differently)
    inside = [slice(None)] * 3
    inside[axis] = slice(3, t1.shape[axis] - 4)
    inside = tuple(inside)
    np.testing.assert_allclose(image[inside], expected[inside], rtol=1e-4, atol=1e-2)
    # the image's world moved 2 mm along R into the grid's: the prior is read through the
    # same transform as the image
    moved = np.eye(4)
    moved[0, 3] = 2.0
    image = through_plane_image(volume, low > 0, "point", 1, grid, transform=moved,
                                state=state, prior=prior)
    cubic = cubic_on_grid(low, low_affine, t1.shape, affine, transform=moved)
    expected_moved = np.clip((cubic + prior) / 2, low.min(), low.max())
    inside_moved = list(inside)
    inside_moved[geometry.voxel_axis(affine, "R")] = slice(3, -3)
    np.testing.assert_allclose(image[tuple(inside_moved)], expected_moved[tuple(inside_moved)],
                               rtol=1e-4, atol=1e-2)
    # a prior on half the grid: the other half is the cubic interpolation's restoration
    half = t1.shape[0] // 2
    partial = through_plane_image(volume, low > 0, "point", 1, (prior[:half].shape, affine),
                                  state=state, prior=prior[:half])
    np.testing.assert_allclose(partial[inside], expected[:half][inside], rtol=1e-4, atol=1e-2)
    # beyond the prior's grid the network reads the cubic interpolation, not a hole: a network
    # that mixes neighbours keeps the half grid's output finite up to its edge
    torch.manual_seed(0)
    mixing = dict(ResidualCNN().state_dict())
    edge = through_plane_image(volume, low > 0, "point", 1, (prior[:half].shape, affine),
                               state=mixing, prior=prior[:half])
    assert np.isfinite(edge).all()


def test_cubic_on_grid_marks_voxels_beyond_the_image():
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = np.eye(4)
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    values = cubic_on_grid(data, affine, (4, 5, 6), shifted, clamp=False, outside=np.nan)
    assert np.isnan(values[2:]).all() and not np.isnan(values[:2]).any()
    np.testing.assert_allclose(values[:2], data[2:], atol=1e-3)

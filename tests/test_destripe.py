"""Acquired-slice softening (mcinr_bids.methods.inr.softening): less banding, measured on the
output only."""

import nibabel as nib
import numpy as np
from scipy import ndimage

from mcinr_bids.core.geometry import voxel_axis
from mcinr_bids.core.volumes import Volume
from mcinr_bids.methods.inr import fit_inr
from mcinr_bids.methods.inr.postprocessing import destripe_image, inr_output
from mcinr_bids.methods.inr.settings import settings_for_preset
from mcinr_bids.methods.inr.softening import (
    EVEN_ENOUGH,
    second_difference,
    slice_geometry,
    soften_acquired_slices,
)
from mcinr_bids.quality import metrics
from mcinr_bids.quality.evaluation import model_outputs
from mcinr_bids.quality.holdout import hold_out


def striped_volume(seed=0):
    """A smooth field whose every 4th slice along axis 2 (from slice 1) carries sharp detail
    too: what a reconstruction that reproduces its acquired slices looks like."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=(40, 40, 41)), 1.2) * 50 + 100
    detail = ndimage.gaussian_filter(rng.normal(size=(40, 40, 41)), 0.7) * 10
    striped = smooth.copy()
    striped[:, :, 1::4] += detail[:, :, 1::4]
    return striped.astype(np.float32), smooth.astype(np.float32)


def test_softening_evens_the_phases_and_leaves_even_images_alone():
    """A striped image (banding ~2) comes out at 1.3 or below (the most even weight, none
    reaching EVEN_ENOUGH) with a weight > 0, changed only within the acquired slices' tent
    (the acquired slices here); an image without stripes keeps weight 0 and every value;
    held-out slices (``skipped``) keep theirs."""
    striped, smooth = striped_volume()
    affine = np.eye(4)
    thick = np.diag([1.0, 1.0, 4.0, 1.0])
    thick[2, 3] = 1.0  # the acquired slices are the grid's slices 1, 5, 9, ...
    inside = np.ones(striped.shape, bool)
    before = metrics.banding_index(striped, inside, 2, 4, 1)
    softened, weight = soften_acquired_slices(striped, (striped.shape, affine), thick, inside)
    after = metrics.banding_index(softened, inside, 2, 4, 1)
    print("banding", before, "->", after, "weight", weight)
    assert before > 2.0 and weight > 0 and after <= 1.3  # issue 12's target
    # the first weight at EVEN_ENOUGH, else the most even: no other weight is more even
    others = [metrics.banding_index(soften_acquired_slices(
        striped, (striped.shape, affine), thick, inside, weights=(w,))[0], inside, 2, 4, 1)
        for w in (0.1, 0.2, 0.3)]
    assert after <= EVEN_ENOUGH + 0.02 or after <= min(others) + 0.02
    changed = np.flatnonzero(np.abs(softened - striped).max(axis=(0, 1)) > 0)
    assert set(changed) <= set(range(1, 41, 4))
    unchanged, none = soften_acquired_slices(smooth, (smooth.shape, affine), thick, inside)
    assert none == 0.0 and np.array_equal(unchanged, smooth)
    # --qc-holdout: the held-out slices (every other one here) are predicted, not acquired
    skipped = np.arange(11) % 2 == 1  # the image's slices 1, 3, ... = grid slices 5, 13, ...
    held, _ = soften_acquired_slices(striped, (striped.shape, affine), thick, inside,
                                     weights=(weight,), skipped=skipped)
    changed = np.flatnonzero(np.abs(held - striped).max(axis=(0, 1)) > 0)
    assert set(changed) == set(range(1, 41, 8))


def test_slice_positions_and_oblique_steps():
    """Positions are integers on the acquired slices (through a transform too); the oblique
    (interpolated) second difference matches the sliced one for a step a hair off the axis."""
    thick = np.diag([1.0, 1.0, 4.0, 1.0])
    thick[:3, 3] = [0.0, 0.0, 2.0]
    shift = np.eye(4)
    shift[2, 3] = 3.0  # the image's world 3 mm up in the output's
    position, step, spacing = slice_geometry((8, 8, 20), np.eye(4), thick, shift)
    assert spacing == 4.0 and np.allclose(step, [0, 0, 1])
    assert np.allclose(position[0, 0, [5, 9, 13]], [0, 1, 2])
    image = striped_volume()[0]
    sliced = second_difference(image, np.array([0.0, 0.0, 1.0]))
    oblique = second_difference(image, np.array([1e-3, 0.0, 1.0]))
    assert np.abs(oblique - sliced)[2:-2, 2:-2, 2:-2].max() < 0.05 * np.abs(sliced).max()


def test_the_decimated_output_has_less_banding(phantom, low_resolution):
    """inr_output softens the thick images' acquired slices by default on point samples (the
    weights recorded per image), with a lower banding index than without, and not on thick
    slabs (the consistency profile box) unless asked; the evaluation mode's re-prediction on
    the truth's grid (model_outputs) softens too, with the same weights."""
    t1, flair, mask, affine = phantom
    volumes = [Volume(d, a, n, slice_thickness_mm=1.0)  # 1 mm slices 4 mm apart: points
               for (d, a), n in zip(low_resolution, ["t1", "flair"])]
    settings = settings_for_preset("fast", early_stopping=False, through_plane_weight=0.0,
                                   epochs=15)
    assert not settings.destripe_on  # undecided: off until the recipe decides
    fitted = fit_inr(volumes, settings)
    assert fitted.settings.destripe_on
    softened, _ = inr_output(fitted, (t1.shape, affine), volumes)
    assert set(fitted.destripe_weights) == {"t1", "flair"}
    chosen = dict(fitted.destripe_weights)
    truths = [nib.Nifti1Image(t1, affine), nib.Nifti1Image(flair, affine)]
    scored = model_outputs(fitted, truths, volumes)  # the evaluation mode's path
    assert fitted.destripe_weights == chosen  # the same choice on the same grid
    fitted.settings.destripe = False
    plain, _ = inr_output(fitted, (t1.shape, affine), volumes)
    unsoftened = model_outputs(fitted, truths, volumes)
    for index in range(2):
        assert not np.allclose(unsoftened[index], scored[index])
    for index, (axis_letter, (_, low_affine)) in enumerate(zip("SR", low_resolution)):
        axis = voxel_axis(affine, axis_letter)
        offset = int(round(np.linalg.solve(affine, low_affine)[axis, 3])) % 4
        bands = [metrics.banding_index(image[index], mask, axis, 4, offset)
                 for image in (plain, softened)]
        print(axis_letter, "banding plain / softened", bands)
        if fitted.destripe_weights[["t1", "flair"][index]] > 0:
            assert bands[1] < bands[0]
        else:
            assert bands[0] <= EVEN_ENOUGH
    # --qc-holdout's fit: its held-out slices are gaps, left as predicted
    held = hold_out(volumes[0], 2)
    grid = (t1.shape, affine)
    fitted.settings.destripe = True
    kept = destripe_image(fitted, 0, plain[0], held, grid, np.ones(t1.shape, bool))
    position = slice_geometry(t1.shape, affine, held.affine)[0]
    on_slice = np.isclose(position, np.round(position))
    index = np.round(position).astype(int).clip(0, len(held.held_out[1]) - 1)
    held_voxels = on_slice & held.held_out[1][index]
    assert held_voxels.any() and np.array_equal(kept[held_voxels], plain[0][held_voxels])
    assert fitted.destripe_weights["t1"] > 0  # and the kept slices were softened
    assert not np.array_equal(kept[on_slice & ~held_voxels], plain[0][on_slice & ~held_voxels])

"""Ground-truth-free quality on the subject's own scans (``--qc-holdout K``).

Every K-th acquired slice of each image (along its thick axis) is kept out of a second
reconstruction; the reconstructions made without them are re-simulated at those slices through
the acquisition's slice profile and compared with what the scanner recorded there.  Clamped
cubic interpolation from the kept slices is scored the same way, so the difference says, on
real data without a ground truth, whether the reconstruction beats interpolation.

The held-out slices never reach a fit: their voxels leave every data term
(:func:`mcinr_bids.core.volumes.observed_region`) and their stored values are replaced by a cubic
interpolation along the slice axis from the kept slices, so whatever reads the data (intensity
scales, starting images, the cubic baseline) sees the kept slices only.  A gap of 2 slices
where a slice is held out makes the check harder than the real task (1 slice gap): its scores
are lower than the true ones, and it is the gain over cubic that it is for.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcinr_bids.core.geometry import thick_axis
from mcinr_bids.core.interpolation import fill_slices
from mcinr_bids.core.volumes import Volume

#: the methods a check can score; ``inr`` is the INR node's delivered output (consistency step
#: and JTV blend included)
HOLDOUT_METHODS = ("inr", "jtv", "cubic")


def held_out_slices(count: int, every: int) -> np.ndarray:
    """Boolean (count,): every ``every``-th slice, starting at ``every // 2`` (the first slice
    always stays, and so the interpolation has slices on both sides of most held-out ones)."""
    if every < 2:
        raise ValueError(f"--qc-holdout must be 0 (off) or >= 2, got {every}")
    return np.arange(count) % every == every // 2


def hold_out(volume: Volume, every: int) -> Volume:
    """A copy of ``volume`` without every ``every``-th slice along its thick axis.

    ValueError naming the image when it has too few slices to keep 2 after holding out.
    """
    axis = thick_axis(volume.affine)
    held = held_out_slices(volume.shape[axis], every)
    if (~held).sum() < 2 or not held.any():
        raise ValueError(f"{volume.path or volume.name}: {volume.shape[axis]} slices are too "
                         f"few for --qc-holdout {every}; use a smaller K or leave it off.")
    kept_values = np.take(volume.data, np.flatnonzero(~held), axis=axis)
    filled = np.clip(fill_slices(volume.data, axis, held), kept_values.min(),
                     kept_values.max()).astype(np.float32)
    return dataclasses.replace(volume, data=filled, held_out=(axis, held))


def held_out_voxels(volume: Volume, mask: np.ndarray) -> np.ndarray:
    """Voxel indices (M, 3) of ``volume``'s held-out slices inside ``mask``."""
    axis, held = volume.held_out
    shape = [1, 1, 1]
    shape[axis] = len(held)
    return np.argwhere(np.asarray(mask, dtype=bool) & held.reshape(shape))


def holdout_scores(originals: list[Volume], held: list[Volume], reconstructions: dict,
                   grid: tuple, masks: list, transforms: list) -> list[dict]:
    """Metrics rows (``measure`` ``holdout_psnr_<method>``, ``holdout_rmse_<method>``, image,
    value) of each reconstruction (``{method: [image per volume on grid]}``) re-simulated
    through the acquisition's slice profile at the held-out voxels of ``held`` inside the
    brain ``masks``, against
    the ``originals``' acquired values there; and ``holdout_gain`` (dB) of the first method
    over ``cubic``."""
    from mcinr_bids.core.forward import forward_project
    from mcinr_bids.quality.metrics import residual_summary

    _, affine = grid
    rows = []
    for index, (original, volume, mask, transform) in enumerate(
            zip(originals, held, masks, transforms)):
        voxels = held_out_voxels(volume, mask)
        region = np.zeros(original.shape, dtype=bool)
        region[tuple(voxels.T)] = True
        scores = {}
        for method, images in reconstructions.items():
            predicted = forward_project(images[index], affine, original, voxels, transform)
            scores[method] = residual_summary(predicted, original, region)
            rows.append({"measure": f"holdout_psnr_{method}", "image": original.name,
                         "value": round(scores[method]["psnr"], 4)})
            rows.append({"measure": f"holdout_rmse_{method}", "image": original.name,
                         "value": round(scores[method]["rmse"], 6)})
        first = next(iter(reconstructions))
        if "cubic" in scores and first != "cubic":
            rows.append({"measure": "holdout_gain", "image": original.name,
                         "value": round(scores[first]["psnr"] - scores["cubic"]["psnr"], 4)})
    return rows


def holdout_check(volumes: list[Volume], every: int, grid: tuple | None = None, *,
                  masks: list | None, transforms: list | None, resolution: float = 1.0,
                  settings=None, jtv_settings=None, methods: tuple[str, ...] = HOLDOUT_METHODS,
                  reference: int = 0, say=None) -> list[dict]:
    """Reconstruct ``volumes`` again without every ``every``-th slice, by each of ``methods``
    (``inr``: the INR of ``settings`` with its consistency step and JTV blend, as the fit node
    delivers it; ``jtv``: :func:`~mcinr_bids.methods.jtv.reconstruct_jtv` of ``jtv_settings``;
    ``cubic``: clamped cubic interpolation) on ``grid`` = (shape, affine) (default: an
    isotropic ``resolution`` mm grid over the masks), and score each on the held-out slices
    (:func:`holdout_scores`); ``reference``: the image the INR's alignment keeps fixed, as in
    the first fit.  Costs one more run of each method."""
    from mcinr_bids.core.interpolation import cubic_on_grid
    from mcinr_bids.core.volumes import prepare_masks
    from mcinr_bids.methods.inr import fit_inr
    from mcinr_bids.methods.inr.postprocessing import inr_output
    from mcinr_bids.methods.jtv import JTVSettings, reconstruct_jtv

    held = [hold_out(v, every) for v in volumes]
    masks = prepare_masks(held, masks)
    transforms = list(transforms) if transforms is not None else [None] * len(volumes)
    if grid is None:
        from mcinr_bids.core.geometry import masks_grid

        grid = masks_grid(masks, [v.affine for v in volumes], transforms, resolution)
    shape, affine = tuple(grid[0]), grid[1]
    jtv_settings = jtv_settings or JTVSettings()
    say = say or (lambda message: None)
    say(f"QC hold-out: every {every}-th slice of each image kept out of a second "
        f"reconstruction by {', '.join(methods)}")
    reconstructions = {}
    if "inr" in methods:
        fitted = fit_inr(held, settings, masks=masks, transforms=transforms,
                         reference=reference)
        reconstructions["inr"], _ = inr_output(fitted, (shape, affine), held,
                                               jtv_settings=jtv_settings)
    if "jtv" in methods:
        reconstructions["jtv"], _ = reconstruct_jtv(held, shape, affine, jtv_settings,
                                                    masks=masks, transforms=transforms)
    reconstructions["cubic"] = [cubic_on_grid(v.data, v.affine, shape, affine, clamp=True,
                                              transform=t) for v, t in zip(held, transforms)]
    return holdout_scores(volumes, held, reconstructions, (shape, affine), masks, transforms)

"""The INR method's output on a grid: the model's prediction, the data-consistency step, and
the blends with the self-supervised through-plane network and with the joint-total-variation
reconstruction, as ``mcinr-fit``, the fit node, the evaluation mode and ``--qc-holdout`` all
deliver it.  numpy + the package's own modules (torch through :mod:`.inr`)."""

from __future__ import annotations

import numpy as np

from mcinr_bids.core.geometry import has_thick_slices
from mcinr_bids.methods.inr import predict_on_grid
from mcinr_bids.methods.inr.consistency import back_project
from mcinr_bids.methods.inr.settings import INRSettings


def inr_output(fitted, grid: tuple, volumes: list, *, jtv_settings=None, say=None,
               keep: list[int] | None = None) -> tuple[list, np.ndarray]:
    """The INR method's output on ``grid`` = (shape, affine) in the model's common space: the
    model's prediction, the data-consistency step, the through-plane network's blend, the JTV
    blend (JTV of ``jtv_settings`` started from the consistent prediction) and the softening
    of acquired slices, each as ``fitted.settings`` (the recipe) say.  The one output chain of
    the method: the fit node, ``mcinr-fit``, the evaluation mode and ``--qc-holdout`` all call
    it.  ``keep``: the images wanted (indices; default all), the others come back as predicted.
    Returns the images and the prediction's foreground."""
    settings = fitted.settings
    grid = (tuple(grid[0]), grid[1])
    keep = list(range(len(volumes))) if keep is None else sorted(keep)
    predictions, foreground = predict_on_grid(fitted, *grid)
    consistent = back_project([predictions[i] for i in keep], grid, [volumes[i] for i in keep],
                              masks=[fitted.masks[i] for i in keep],
                              transforms=[fitted.transforms[i] for i in keep],
                              steps=settings.consistency_steps,
                              dilation_mm=settings.foreground_dilation_mm,
                              foreground=foreground)
    for index, image in zip(keep, consistent):
        predictions[index] = image
    # after the consistency step: run on the network's output it spread the network's errors
    # on the acquired slices into the gaps (-0.25 / -0.15 dB on gli decimation, RESULTS.md)
    predictions = blend_through_plane(predictions, fitted, volumes, grid, foreground, say, keep)
    predictions = blend_jtv(predictions, settings, volumes, grid, fitted.masks,
                            fitted.transforms, jtv_settings, foreground, say)
    return destripe(predictions, fitted, volumes, grid, foreground, say, keep), foreground


def destripe(predictions: list, fitted, volumes: list, grid: tuple, foreground,
             say=None, keep: list[int] | None = None) -> list:
    """Each thick image's output (of those in ``keep``, default all) with its acquired slices
    softened (:func:`.destripe.soften_acquired_slices`) when ``settings.destripe_on``; the
    weights chosen are kept in ``fitted.destripe_weights`` (image name -> weight)."""
    return [destripe_image(fitted, index, prediction, volume, grid, foreground,
                           fitted.transforms[index], say)
            if keep is None or index in keep else prediction
            for index, (prediction, volume) in enumerate(zip(predictions, volumes))]


def destripe_image(fitted, index: int, image: np.ndarray, volume, grid: tuple, foreground,
                   transform=None, say=None) -> np.ndarray:
    """Image ``index``'s output on ``grid`` with its acquired slices softened (when
    ``settings.destripe_on`` and the image has thick slices; ``transform``: the image's world
    to the grid's)."""
    if not fitted.settings.destripe_on or not has_thick_slices(volume.affine):
        return image
    from mcinr_bids.methods.inr.softening import soften_acquired_slices

    image, weight = soften_acquired_slices(
        image, grid, volume.affine, foreground, transform,
        skipped=None if volume.held_out is None else volume.held_out[1])
    fitted.destripe_weights[fitted.names[index]] = weight
    if say:
        say(f"acquired slices of {fitted.names[index]} softened (weight {weight:g})")
    return image


def blend_through_plane(predictions: list, fitted, volumes: list, grid: tuple,
                        foreground=None, say=None, keep: list[int] | None = None) -> list:
    """``(1 - w) * INR + w * network`` inside ``foreground`` for every image with thick slices
    (of those in ``keep``, default all), ``w = settings.network_weight``
    (:mod:`.through_plane_network`); unchanged when 0."""
    settings = fitted.settings
    weight = settings.network_weight
    if not weight:
        return predictions
    blended = []
    for index, (prediction, volume) in enumerate(zip(predictions, volumes)):
        if not has_thick_slices(volume.affine) or (keep is not None and index not in keep):
            blended.append(prediction)
            continue
        if say:
            say(f"through-plane network for {fitted.names[index]} (weight {weight:.2g})")
        image = network_image(fitted, index, volume, grid, fitted.transforms[index],
                              prior=prediction)
        blended.append(blend([prediction], [image], weight, foreground)[0])
    return blended


def network_image(fitted, index: int, volume, grid: tuple, transform,
                  prior: np.ndarray | None = None) -> np.ndarray:
    """Image ``index``'s through-plane network reconstruction on ``grid`` = (shape, affine),
    ``transform`` mapping the image's world to the grid's (None: the same world).  The network
    is trained on the first call and kept in ``fitted.through_plane_states`` (and so in the
    checkpoint): later grids reuse it.  ``prior``: the INR's output on ``grid``, which the
    network restores as well (:func:`~.inr.throughplane.through_plane_image`)."""
    import torch

    from mcinr_bids.core.slices import slab_fraction, slice_profile
    from mcinr_bids.methods.inr.through_plane_network import through_plane_image

    settings = fitted.settings
    with torch.enable_grad():
        return through_plane_image(
            volume, fitted.masks[index], slice_profile(volume),
            settings.through_plane_steps, grid, transform=transform,
            slab_fraction=slab_fraction(volume), seed=settings.seed + index,
            device=next(fitted.model.parameters()).device,
            state=fitted.through_plane_states.setdefault(index, {}), prior=prior)


def blend_jtv(predictions: list, settings: INRSettings, volumes: list, grid: tuple,
              masks: list, transforms: list, jtv_settings=None, foreground=None,
              say=None) -> list:
    """``(1 - w) * INR + w * JTV`` inside ``foreground`` with ``w = settings.blend_weight``
    (the predictions unchanged when it is 0); JTV reconstructs the same inputs on ``grid``,
    starting from the predictions (the INR's output refined by the JTV objective: 0.3 dB
    better on the gli T1c than JTV started from cubic splines, benchmarks/RESULTS.md)."""
    weight = settings.blend_weight
    if not weight:
        return predictions
    from mcinr_bids.methods.jtv import JTVSettings, reconstruct_jtv

    jtv_settings = jtv_settings or JTVSettings()
    if say:
        say(f"JTV reconstruction from the INR's output for the blend (weight {weight:g})")
    images, _ = reconstruct_jtv(volumes, tuple(grid[0]), grid[1], jtv_settings, masks=masks,
                                transforms=transforms, start=predictions)
    return blend(predictions, images, weight, foreground)


def blend(predictions: list, others: list | None, weight: float, foreground=None) -> list:
    """``(1 - weight) * prediction + weight * other`` inside ``foreground`` (everywhere when
    None); the predictions unchanged when ``weight`` is 0."""
    if not weight:
        return predictions
    return [np.where(True if foreground is None else foreground,
                     (1 - weight) * p + weight * o, p).astype(np.float32)
            for p, o in zip(predictions, others)]

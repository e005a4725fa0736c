"""Joint total variation (JTV) multi-contrast super-resolution, the classical anchor (the method
of UniRes, Brudfors et al. 2018/2019, written from the papers; UniRes itself is not used).

Every contrast is an unknown image on one isotropic output grid.  Each low-resolution (LR)
voxel is modelled as the mean of that image over the voxel's slice profile (the acquisition's
own, :mod:`mcinr_bids.core.slices`: ``box``, uniform across the slice thickness, as a 2D
acquisition records it; ``point``, the voxel centre, for decimated data) at its world
position, through the image's affine and rigid transform; the LR data are never resampled.
The reconstruction minimises

    sum_c ||A_c x_c - y_c||^2 / (2 sigma_c^2) + lambda sum_v sqrt(sum_c |grad x_c(v)|^2 + eps^2)

with each image's noise level ``sigma_c`` estimated from the data (as UniRes sets its
data-term weights from each image's noise), intensities normalised per image, and the JTV
prior coupling the contrasts' gradients (edges are encouraged to coincide).  Solved with Adam
from the cubic-spline interpolation.  torch + numpy only (torch is imported where it is used,
so that the settings load without it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from mcinr_bids.core.forward import (
    profile_indices,
    profile_offsets,
    projection_matrix,
)
from mcinr_bids.core.geometry import thick_axis, voxel_sizes
from mcinr_bids.core.interpolation import cubic_on_grid
from mcinr_bids.core.volumes import (
    IntensityScale,
    Volume,
    automatic_foreground_mask,
    observed_region,
)
from mcinr_bids.methods.jtv.settings import JTVSettings

if TYPE_CHECKING:  # pragma: no cover
    import torch


def noise_sigma(data: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Noise standard deviation of an image (in its units), from the median absolute in-plane
    Laplacian inside ``mask`` (robust to edges; the 4-neighbour Laplacian multiplies white
    noise's variance by 20)."""
    planes = np.moveaxis(np.asarray(data, dtype=np.float64), axis, -1)
    inside = np.moveaxis(np.asarray(mask, dtype=bool), axis, -1)
    laplacian = (planes[:-2, 1:-1] + planes[2:, 1:-1] + planes[1:-1, :-2] + planes[1:-1, 2:]
                 - 4 * planes[1:-1, 1:-1])
    values = laplacian[inside[1:-1, 1:-1]]
    if values.size == 0:
        return 1.0
    mad = float(np.median(np.abs(values - np.median(values))))
    return max(1.4826 * mad / np.sqrt(20.0), 1e-6)


def joint_total_variation(images: torch.Tensor, epsilon: float
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """sum over voxels of sqrt(sum over contrasts and axes of forward differences^2 + eps^2)
    for (C, I, J, K) images (differences beyond the last voxel are 0), and its gradient
    (C, I, J, K), computed directly (a third of autograd's time and memory on a 1 mm grid)."""
    import torch

    with torch.no_grad():
        differences = []
        squared = torch.full_like(images[0], epsilon**2)
        for axis in range(1, 4):
            difference = torch.zeros_like(images)
            torch.diff(images, dim=axis, out=difference.narrow(axis, 0, images.shape[axis] - 1))
            squared.add_(difference.square().sum(0))
            differences.append(difference)
        norm = squared.sqrt_()
        value = norm.sum()
        norm.clamp_(min=1e-12)  # where it is 0 every difference is 0 (epsilon = 0)
        gradient = torch.zeros_like(images)
        for axis, difference in zip(range(1, 4), differences):
            flux = difference.div_(norm)  # d/dx of the sum: D^T (difference / norm)
            gradient.sub_(flux)
            gradient.narrow(axis, 1, images.shape[axis] - 1).add_(
                flux.narrow(axis, 0, images.shape[axis] - 1))
    return value, gradient


def data_box(points: list[np.ndarray], shape, margin: int = 2) -> tuple[slice, slice, slice]:
    """The grid's index box (slices) around every continuous index in ``points`` (each
    (P, 3)), ``margin`` voxels wider on each side, inside the grid."""
    points = [p for p in points if len(p)] or [np.zeros((1, 3))]  # an image with no data
    low = np.min([p.min(0) for p in points], axis=0)
    high = np.max([p.max(0) for p in points], axis=0)
    low = np.clip(np.floor(low).astype(int) - margin, 0, np.asarray(shape) - 1)
    high = np.clip(np.ceil(high).astype(int) + margin, low, np.asarray(shape) - 1)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high))


def data_terms(volumes: list[Volume], masks: list, transforms: list, scales: list,
               affine: np.ndarray) -> tuple[list, list, list, list, list]:
    """The data terms of :func:`reconstruct_jtv`, one per image: the continuous grid indices of
    the profile points of its observed LR voxels (M*K, 3), their normalised values (M,), the
    term's weight 1 / (2 sigma^2), the noise sigma (normalised units) and K."""
    resolution = float(voxel_sizes(affine).min())
    points, targets, weights, sigmas, counts = [], [], [], [], []
    for volume, mask, transform, scale in zip(volumes, masks, transforms, scales):
        region = observed_region(volume, mask, 2.0)
        offsets = profile_offsets(volume, resolution)
        points.append(profile_indices(volume, np.argwhere(region).astype(np.float64), offsets,
                                      transform, affine))
        counts.append(len(offsets))
        targets.append(scale.normalise(volume.data[region]))
        sigma = noise_sigma(volume.data, mask, thick_axis(volume.affine)) / scale.scale
        sigmas.append(sigma)
        weights.append(1.0 / (2.0 * sigma**2))
    return points, targets, weights, sigmas, counts


def reconstruct_jtv(volumes: list[Volume], shape: tuple[int, int, int], affine: np.ndarray,
                    settings: JTVSettings | None = None, masks: list | None = None,
                    transforms: list | None = None, progress=None,
                    start: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], dict]:
    """JTV reconstruction of every contrast on the grid (shape, affine).

    Parameters
    ----------
    volumes : list of Volume
        LR images, each on its own grid (never resampled).
    masks, transforms
        Each image's foreground on its own grid (default: automatic) and world -> grid-world
        rigid transform (default: identity).
    progress : callable or None
        ``progress(iteration, history_row)`` after each iteration.
    start : list of ndarray or None
        The images the iterations start from (one per volume on the grid, its intensity
        units); default: each image's cubic interpolation.

    Returns
    -------
    list of ndarray, dict
        One float32 array of ``shape`` per volume in its intensity units (clamped to its LR
        range); facts of the run: ``noise_sigma`` (image units), ``seconds``, ``objective``
        and ``history`` (per iteration: the objective and each image's mean squared residual
        in normalised units, ``loss_<name>``).
    """
    import torch

    settings = settings or JTVSettings()
    settings.validate()
    started = time.perf_counter()
    masks = masks or [automatic_foreground_mask(v.data) for v in volumes]
    transforms = transforms or [None] * len(volumes)
    scales = [IntensityScale.from_image(v.data, m) for v, m in zip(volumes, masks)]
    points, targets, weights, sigmas, counts = data_terms(volumes, masks, transforms, scales,
                                                          affine)
    if start is None:
        start = [cubic_on_grid(v.data, v.affine, shape, affine, transform=t)
                 for v, t in zip(volumes, transforms)]
    start = np.stack([scale.normalise(np.asarray(image, dtype=np.float32))
                      for image, scale in zip(start, scales)])
    # the unknowns: the grid's box around every profile point (voxels beyond it see no data
    # and keep the start)
    box = data_box(points, shape)
    low = np.array([b.start for b in box])
    matrices = [projection_matrix(p - low, [b.stop - b.start for b in box], count)
                for p, count in zip(points, counts)]
    adjoints = [m.T.tocsr() for m in matrices]
    images = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(start[(slice(None),)
                                                                           + box])))
    optimiser = torch.optim.Adam([images], lr=settings.step_size)
    names = [v.name or f"image{i}" for i, v in enumerate(volumes)]
    history = []
    for iteration in range(1, int(settings.iterations) + 1):
        prior, gradient = joint_total_variation(images.detach(), settings.epsilon)
        objective = settings.regularisation * float(prior)
        gradient.mul_(settings.regularisation)
        row = {"epoch": iteration}
        for index, (matrix, adjoint, target, weight) in enumerate(
                zip(matrices, adjoints, targets, weights)):
            flat = gradient[index].view(-1)
            residual = matrix @ images[index].detach().numpy().ravel() - target
            objective += weight * float(np.square(residual, dtype=np.float64).sum())
            flat.add_(torch.from_numpy(adjoint @ residual.astype(np.float32)), alpha=2 * weight)
            row[f"loss_{names[index]}"] = float(np.mean(np.square(residual, dtype=np.float64)))
        images.grad = gradient
        optimiser.step()
        row["objective"] = objective
        history.append(row)
        if progress:
            progress(iteration, row)
    start[(slice(None),) + box] = images.detach().numpy()
    result = [np.clip(scale.restore(image), float(v.data.min()), float(v.data.max()))
              for image, scale, v in zip(start, scales, volumes)]
    return result, {"noise_sigma": [s * sc.scale for s, sc in zip(sigmas, scales)],
                    "seconds": time.perf_counter() - started,
                    "objective": history[-1]["objective"], "history": history}

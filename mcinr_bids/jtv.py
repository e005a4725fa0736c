"""Joint total variation (JTV) multi-contrast super-resolution, the classical anchor (the method
of UniRes, Brudfors et al. 2018/2019, written from the papers; UniRes itself is not used).

Every contrast is an unknown image on one isotropic output grid.  Each low-resolution (LR)
voxel is modelled as the mean of that image over the voxel's slice profile (``box``: uniform
across the slice thickness, as a 2D acquisition records it; ``point``: the voxel centre, for
decimated data) at its world position, through the image's affine and rigid transform; the LR
data are never resampled.  The reconstruction minimises

    sum_c ||A_c x_c - y_c||^2 / (2 sigma_c^2) + lambda sum_v sqrt(sum_c |grad x_c(v)|^2 + eps^2)

with each image's noise level ``sigma_c`` estimated from the data (as UniRes sets its
data-term weights from each image's noise), intensities normalised per image, and the JTV
prior coupling the contrasts' gradients (edges are encouraged to coincide).  Solved with Adam
from the cubic-spline interpolation.  torch + numpy only (torch is imported where it is used,
so that the settings load without it).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .baselines import cubic_on_grid
from .geometry import apply_transform, thick_axis, voxel_sizes, world_coordinates
from .inr.data import (
    IntensityScale,
    Volume,
    automatic_foreground_mask,
    observed_region,
)
from .inr.settings import SLICE_PROFILES as PROFILES
from .inr.slices import slab_fraction

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class JTVSettings:
    """Settings of :func:`reconstruct_jtv` (intensities normalised to about [0, 1]); the
    ``[jtv]`` table of a settings file."""

    #: weight of the JTV prior against the noise-weighted data terms
    regularisation: float = 1.0
    iterations: int = 150
    #: Adam step size on intensities normalised to about [0, 1]
    step_size: float = 0.01
    #: slice profile of an acquired voxel: ``box`` (thick 2D slices), ``point`` (decimation)
    profile: str = "box"
    epsilon: float = 1e-3

    def validate(self) -> None:
        """ValueError naming the setting that is out of range."""
        if self.profile not in PROFILES:
            raise ValueError(f"[jtv] profile must be one of {', '.join(PROFILES)}, got "
                             f"{self.profile!r}")
        for name in ("regularisation", "step_size", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"[jtv] {name} must be > 0, got {getattr(self, name)!r}")
        if int(self.iterations) < 1:
            raise ValueError(f"[jtv] iterations must be >= 1, got {self.iterations!r}")


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


def profile_offsets(volume: Volume, profile: str, resolution: float) -> np.ndarray:
    """Offsets (K, 3) in the LR image's voxel units of the points that represent one voxel:
    its centre (``point``) or K points evenly across the slice thickness (``box``, K = slice
    thickness / output voxel size; the thickness is the spacing unless the volume gives its own,
    :func:`~mcinr_bids.inr.data.slab_fraction`)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    axis = thick_axis(volume.affine)
    fraction = slab_fraction(volume)
    count = 1 if profile == "point" else max(1, round(
        voxel_sizes(volume.affine)[axis] * fraction / resolution))
    offsets = np.zeros((count, 3))
    offsets[:, axis] = ((np.arange(count) + 0.5) / count - 0.5) * fraction
    return offsets


def profile_indices(volume: Volume, voxels: np.ndarray, offsets: np.ndarray,
                    transform: np.ndarray | None, affine: np.ndarray) -> np.ndarray:
    """Continuous voxel indices (M*K, 3) on the output grid ``affine`` of the K profile points
    (``offsets``, :func:`profile_offsets`) of each LR voxel (M, 3), K consecutive per voxel."""
    points = (voxels[:, None, :] + offsets[None]).reshape(-1, 3)
    world = apply_transform(transform, world_coordinates(volume.affine, points))
    return apply_transform(np.linalg.inv(affine), world)


def sampling_grid(volume: Volume, voxels: np.ndarray, offsets: np.ndarray,
                  transform: np.ndarray | None, shape, affine) -> torch.Tensor:
    """Normalised ``grid_sample`` coordinates (1, M*K, 1, 1, 3) on the output grid of the K
    profile points of each LR voxel (M, 3)."""
    import torch

    indices = profile_indices(volume, voxels, offsets, transform, affine)
    normalised = 2 * indices / (np.asarray(shape, dtype=np.float64) - 1) - 1
    # grid_sample reads (x, y, z) = (last, middle, first) axis of a (D, H, W) volume
    return torch.from_numpy(normalised[:, ::-1].astype(np.float32).copy()).view(1, -1, 1, 1, 3)


def projection_matrix(indices: np.ndarray, shape, count: int):
    """The forward model as a sparse matrix (M, I*J*K) (scipy CSR, float32): row m is the mean
    over the ``count`` consecutive points m*count... of ``indices`` (M*count, 3, continuous
    voxel indices of a grid of ``shape``) of the grid's trilinear interpolation, coordinates
    clamped to the grid (``grid_sample``'s border padding: the same numbers as
    :func:`forward_project`).  Its transpose is the exact adjoint that JTV's gradient needs."""
    import scipy.sparse

    shape = np.asarray(shape, dtype=np.int64)
    position = np.clip(np.asarray(indices, dtype=np.float64), 0, shape - 1)
    base = np.minimum(np.floor(position), np.maximum(shape - 2, 0)).astype(np.int64)
    fraction = position - base
    columns, weights = [], []
    for corner in itertools.product((0, 1), repeat=3):
        step = np.asarray(corner)
        columns.append(np.ravel_multi_index(tuple(np.minimum(base + step, shape - 1).T),
                                            tuple(shape)))
        weights.append(np.prod(np.where(step == 1, fraction, 1.0 - fraction), axis=1))
    rows = len(position) // count
    columns = np.stack(columns, 1).reshape(rows, -1)
    weights = (np.stack(weights, 1) / count).astype(np.float32).reshape(rows, -1)
    matrix = scipy.sparse.csr_matrix(
        (weights.ravel(), columns.ravel(), np.arange(rows + 1) * columns.shape[1]),
        shape=(rows, int(np.prod(shape))))
    matrix.sum_duplicates()
    return matrix


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


def _project(image, grid, count: int):
    """The forward model: the mean of ``image`` (I, J, K) over the ``count`` profile points of
    each LR voxel in ``grid`` (:func:`sampling_grid`); shape (M,)."""
    import torch

    return torch.nn.functional.grid_sample(
        image[None, None], grid, mode="bilinear", padding_mode="border",
        align_corners=True).view(-1, count).mean(1)


def forward_project(image: np.ndarray, affine: np.ndarray, volume: Volume, voxels: np.ndarray,
                    profile: str = "box", transform: np.ndarray | None = None) -> np.ndarray:
    """What the forward model of :func:`reconstruct_jtv` predicts at the LR voxels ``voxels``
    (M, 3) of ``volume`` from an image (I, J, K) on the grid ``affine``: shape (M,), float64
    (the re-simulation of an acquisition from a reconstruction)."""
    import torch

    offsets = profile_offsets(volume, profile, float(voxel_sizes(affine).min()))
    grid = sampling_grid(volume, np.asarray(voxels, dtype=np.float64), offsets, transform,
                         image.shape, affine)
    with torch.no_grad():
        values = _project(torch.from_numpy(np.asarray(image, dtype=np.float32)), grid,
                          len(offsets))
    return values.numpy().astype(np.float64)


def data_box(points: list[np.ndarray], shape, margin: int = 2) -> tuple[slice, slice, slice]:
    """The grid's index box (slices) around every continuous index in ``points`` (each
    (P, 3)), ``margin`` voxels wider on each side, inside the grid."""
    points = [p for p in points if len(p)] or [np.zeros((1, 3))]  # an image with no data
    low = np.min([p.min(0) for p in points], axis=0)
    high = np.max([p.max(0) for p in points], axis=0)
    low = np.clip(np.floor(low).astype(int) - margin, 0, np.asarray(shape) - 1)
    high = np.clip(np.ceil(high).astype(int) + margin, low, np.asarray(shape) - 1)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high))


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
    resolution = float(voxel_sizes(affine).min())
    scales = [IntensityScale.from_image(v.data, m) for v, m in zip(volumes, masks)]
    points, targets, weights, sigmas, counts = [], [], [], [], []
    for volume, mask, transform, scale in zip(volumes, masks, transforms, scales):
        region = observed_region(volume, mask, 2.0)
        offsets = profile_offsets(volume, settings.profile, resolution)
        points.append(profile_indices(volume, np.argwhere(region).astype(np.float64), offsets,
                                      transform, affine))
        counts.append(len(offsets))
        targets.append(scale.normalise(volume.data[region]))
        sigma = noise_sigma(volume.data, mask, thick_axis(volume.affine)) / scale.scale
        sigmas.append(sigma)
        weights.append(1.0 / (2.0 * sigma**2))
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

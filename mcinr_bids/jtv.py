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

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .baselines import cubic_on_grid
from .geometry import apply_transform, thick_axis, voxel_sizes, world_coordinates
from .inr.data import IntensityScale, Volume, automatic_foreground_mask, observed_region
from .inr.settings import SLICE_PROFILES as PROFILES

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
    thickness / output voxel size)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    axis = thick_axis(volume.affine)
    count = 1 if profile == "point" else max(1, round(voxel_sizes(volume.affine)[axis]
                                                       / resolution))
    offsets = np.zeros((count, 3))
    offsets[:, axis] = (np.arange(count) + 0.5) / count - 0.5
    return offsets


def sampling_grid(volume: Volume, voxels: np.ndarray, offsets: np.ndarray,
                  transform: np.ndarray | None, shape, affine) -> torch.Tensor:
    """Normalised ``grid_sample`` coordinates (1, M*K, 1, 1, 3) on the output grid of the K
    profile points of each LR voxel (M, 3)."""
    import torch

    points = (voxels[:, None, :] + offsets[None]).reshape(-1, 3)
    world = apply_transform(transform, world_coordinates(volume.affine, points))
    indices = apply_transform(np.linalg.inv(affine), world)
    normalised = 2 * indices / (np.asarray(shape, dtype=np.float64) - 1) - 1
    # grid_sample reads (x, y, z) = (last, middle, first) axis of a (D, H, W) volume
    return torch.from_numpy(normalised[:, ::-1].astype(np.float32).copy()).view(1, -1, 1, 1, 3)


def joint_total_variation(images: torch.Tensor, epsilon: float) -> torch.Tensor:
    """sum over voxels of sqrt(sum over contrasts and axes of forward differences^2 + eps^2)
    for (C, I, J, K) images (differences beyond the last voxel are 0)."""
    import torch

    squared = torch.zeros_like(images[0])
    for axis in range(1, 4):
        difference = torch.diff(images, dim=axis)
        padded = torch.nn.functional.pad(difference, [0, 0] * (3 - axis) + [0, 1])
        squared = squared + padded.pow(2).sum(0)
    return torch.sqrt(squared + epsilon**2).sum()


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
    grids, targets, weights, sigmas = [], [], [], []
    for volume, mask, transform, scale in zip(volumes, masks, transforms, scales):
        region = observed_region(volume, mask, 2.0)
        voxels = np.argwhere(region).astype(np.float64)
        offsets = profile_offsets(volume, settings.profile, resolution)
        grids.append(sampling_grid(volume, voxels, offsets, transform, shape, affine))
        targets.append(torch.from_numpy(scale.normalise(volume.data[region])))
        sigma = noise_sigma(volume.data, mask, thick_axis(volume.affine)) / scale.scale
        sigmas.append(sigma)
        weights.append(1.0 / (2.0 * sigma**2))
    if start is None:
        start = [cubic_on_grid(v.data, v.affine, shape, affine, transform=t)
                 for v, t in zip(volumes, transforms)]
    start = np.stack([scale.normalise(np.asarray(image, dtype=np.float32))
                      for image, scale in zip(start, scales)])
    images = torch.nn.Parameter(torch.from_numpy(start))
    optimiser = torch.optim.Adam([images], lr=settings.step_size)
    counts = [len(g.view(-1, 3)) // len(t) for g, t in zip(grids, targets)]
    names = [v.name or f"image{i}" for i, v in enumerate(volumes)]
    history = []
    for iteration in range(1, int(settings.iterations) + 1):
        optimiser.zero_grad(set_to_none=True)
        loss = settings.regularisation * joint_total_variation(images, settings.epsilon)
        row = {"epoch": iteration}
        for index, (grid, target, weight, count) in enumerate(
                zip(grids, targets, weights, counts)):
            squared = (_project(images[index], grid, count) - target).pow(2)
            loss = loss + weight * squared.sum()
            row[f"loss_{names[index]}"] = float(squared.detach().mean())
        loss.backward()
        optimiser.step()
        row["objective"] = float(loss.detach())
        history.append(row)
        if progress:
            progress(iteration, row)
    result = [np.clip(scale.restore(image), float(v.data.min()), float(v.data.max()))
              for image, scale, v in zip(images.detach().numpy(), scales, volumes)]
    return result, {"noise_sigma": [s * sc.scale for s, sc in zip(sigmas, scales)],
                    "seconds": time.perf_counter() - started,
                    "objective": history[-1]["objective"], "history": history}

"""Interpolation baselines (pure numpy/scipy)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import apply_transform, world_coordinates


def cubic_on_grid(data: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int],
                  output_affine: np.ndarray, clamp: bool = True,
                  transform: np.ndarray | None = None,
                  outside: float | None = None) -> np.ndarray:
    """Cubic-spline interpolation of one LR image onto an output grid.

    ``clamp`` limits the result to the LR image's intensity range (the fair baseline: unclamped
    cubic splines ring outside that range).  ``transform`` maps the LR image's world space to the
    output's world space, as in training.  ``outside``: the value of output voxels beyond the
    image's grid (None: the nearest edge value).  Returns float32 of ``shape``.
    """
    indices = np.indices(shape).reshape(3, -1).T
    world = world_coordinates(output_affine, indices)
    if transform is not None:
        world = apply_transform(np.linalg.inv(transform), world)
    voxels = apply_transform(np.linalg.inv(affine), world)
    values = ndimage.map_coordinates(np.asarray(data, dtype=np.float64), voxels.T, order=3,
                                     mode="nearest")
    if clamp:
        values = np.clip(values, float(data.min()), float(data.max()))
    if outside is not None:
        beyond = ((voxels < -0.5) | (voxels > np.asarray(data.shape[:3]) - 0.5)).any(axis=1)
        values[beyond] = outside
    return values.reshape(shape).astype(np.float32)

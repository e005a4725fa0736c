"""Data consistency of a reconstruction with its acquisitions (iterative back-projection).

A reconstruction on the output grid is re-simulated at every acquired voxel through that
image's own slice profile (the forward model of :mod:`mcinr_bids.core.forward`: ``box`` = the
mean across the slice thickness, as a 2D acquisition records it; ``point`` = the voxel centre,
for decimated data), and the residual, interpolated back onto the output grid by cubic splines,
is added (Irani & Peleg's iterative back-projection with a smooth back-projector):

    x <- x + cubic(y - A x)

The INR is fitted with a point model (each LR voxel a sample at its centre); on thick slices
the acquired value is a slab mean, and this step removes that bias at the cost of a few cubic
interpolations (``benchmarks/RESULTS.md``).  numpy/scipy, and torch through the forward model.
"""

from __future__ import annotations

import numpy as np

from mcinr_bids.core.interpolation import cubic_on_grid, fill_slices
from mcinr_bids.core.volumes import Volume, observed_region


def back_project(images: list[np.ndarray], grid: tuple, volumes: list[Volume], *,
                 masks: list[np.ndarray], transforms: list | None = None,
                 steps: int = 2, dilation_mm: float = 2.0,
                 foreground: np.ndarray | None = None) -> list[np.ndarray]:
    """Each image (I, J, K) on ``grid`` = (shape, affine) made consistent with its acquisition.

    Parameters
    ----------
    images : list of ndarray
        One reconstruction per volume, in that volume's intensity units.
    volumes, masks, transforms
        The LR acquisitions on their own grids, their foreground masks (the residual is taken
        on the mask dilated by ``dilation_mm``, the voxels the fit saw) and each one's world ->
        grid-world rigid transform (``None``: identity).
    steps : int
        Back-projection steps (0 returns the images unchanged).
    foreground : ndarray of bool or None
        Where on the grid the corrections apply (``None``: everywhere).

    Returns
    -------
    list of ndarray
        float32 arrays of the grid's shape, clipped to each acquisition's intensity range.
    """
    from mcinr_bids.core.forward import forward_project

    shape, affine = tuple(grid[0]), np.asarray(grid[1], dtype=np.float64)
    transforms = list(transforms) if transforms is not None else [None] * len(volumes)
    corrected = []
    for image, volume, mask, transform in zip(images, volumes, masks, transforms):
        image = np.asarray(image, dtype=np.float32)
        if steps < 1:
            corrected.append(image)
            continue
        region = observed_region(volume, mask, dilation_mm)
        voxels = np.argwhere(region).astype(np.float64)
        observed = volume.data[region].astype(np.float64)
        low, high = float(volume.data.min()), float(volume.data.max())
        for _ in range(steps):
            residual = np.zeros(volume.shape, dtype=np.float64)
            residual[region] = observed - forward_project(image, affine, volume, voxels,
                                                          transform)
            if volume.held_out is not None:  # --qc-holdout: interpolate across those slices
                residual = fill_slices(residual, *volume.held_out)
            correction = cubic_on_grid(residual, volume.affine, shape, affine, clamp=False,
                                       transform=transform)
            if foreground is not None:
                correction = np.where(foreground, correction, 0.0)
            image = np.clip(image + correction, low, high).astype(np.float32)
        corrected.append(image)
    return corrected

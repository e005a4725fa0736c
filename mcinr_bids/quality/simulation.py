"""Simulating anisotropic low-resolution (LR) acquisitions from isotropic images.

Pure numpy/nibabel.  Every function returns the LR array and its affine, so the LR voxels keep
their true world positions.
"""

from __future__ import annotations

import numpy as np

from mcinr_bids.core.geometry import FWHM_TO_SIGMA

#: how the evaluation mode simulates thick slices: ``decimate`` keeps every N-th slice (point
#: samples, the paper's protocol); ``thick`` averages N slices through a box profile (as a 2D
#: acquisition records its slab)
PROTOCOLS = ("decimate", "thick")


def _scaled_affine(affine: np.ndarray, axis: int, factor: float, offset: float) -> np.ndarray:
    """Affine of LR voxel j located at HR index ``offset + factor * j`` along ``axis``."""
    step = np.eye(4)
    step[axis, axis] = factor
    step[axis, 3] = offset
    return np.asarray(affine, dtype=np.float64) @ step


def decimate(data: np.ndarray, affine: np.ndarray, axis: int, factor: int = 4, offset: int | None
             = None) -> tuple[np.ndarray, np.ndarray]:
    """The paper's protocol: keep every ``factor``-th slice along ``axis``.

    With the default ``offset = factor - 1`` the result equals ``data[..., 3::4]`` (for axis 2,
    factor 4), with the matching affine.
    """
    offset = factor - 1 if offset is None else offset
    index = [slice(None)] * 3
    index[axis] = slice(offset, None, factor)
    return np.ascontiguousarray(data[tuple(index)]), _scaled_affine(affine, axis, factor, offset)


def slice_profile_weights(n_high: int, factor: int, profile: str = "box", gap: float = 0.0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Weights (n_low, n_high) of HR slices in each LR slice, and LR centres in HR indices.

    LR slice j is centred at ``j * factor + (factor - 1) / 2``; its thickness is ``factor - gap``
    HR slices.  ``box`` integrates a rectangle (partial overlap counts partially); ``gaussian``
    uses a Gaussian with FWHM equal to the thickness.
    """
    if profile not in ("box", "gaussian"):
        raise ValueError("profile must be 'box' or 'gaussian'")
    thickness = factor - gap
    if thickness <= 0:
        raise ValueError("the gap must be smaller than the slice spacing")
    n_low = n_high // factor
    centres = np.arange(n_low) * factor + (factor - 1) / 2.0
    positions = np.arange(n_high)
    distance = positions[None, :] - centres[:, None]
    if profile == "box":
        low = np.maximum(distance - 0.5, -thickness / 2)
        high = np.minimum(distance + 0.5, thickness / 2)
        weights = np.clip(high - low, 0.0, None)
    else:
        sigma = thickness * FWHM_TO_SIGMA
        weights = np.exp(-0.5 * (distance / sigma) ** 2)
        weights[np.abs(distance) > 3 * sigma] = 0.0
    return weights / weights.sum(axis=1, keepdims=True), centres


def thick_slices(data: np.ndarray, affine: np.ndarray, axis: int, factor: int = 4,
                 profile: str = "box", gap: float = 0.0, noise_level: float = 0.0,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Thick-slice protocol: average HR slices through a slice profile, optionally add Rician
    noise with standard deviation ``noise_level`` times the image's 99th percentile."""
    weights, centres = slice_profile_weights(data.shape[axis], factor, profile, gap)
    moved = np.moveaxis(np.asarray(data, dtype=np.float64), axis, -1)
    low = np.moveaxis(moved @ weights.T, -1, axis).astype(np.float32)
    if noise_level > 0:
        rng = np.random.default_rng(seed)
        sigma = noise_level * float(np.percentile(data, 99))
        real = low + rng.normal(0.0, sigma, low.shape)
        imaginary = rng.normal(0.0, sigma, low.shape)
        low = np.sqrt(real**2 + imaginary**2).astype(np.float32)
    return low, _scaled_affine(affine, axis, factor, float(centres[0]))

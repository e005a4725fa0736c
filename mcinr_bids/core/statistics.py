"""Image statistics that methods and metrics share: mutual information between two images and
the detail an image holds along an axis (numpy/scipy)."""

from __future__ import annotations

import numpy as np


def mutual_information(first: np.ndarray, second: np.ndarray, bins: int = 32) -> float:
    """Mutual information (nats) of two equally shaped arrays from a ``bins`` x ``bins`` joint
    histogram over each array's own range."""
    joint, _, _ = np.histogram2d(np.ravel(first), np.ravel(second), bins=bins)
    joint = joint / joint.sum()
    marginal_first = joint.sum(axis=1, keepdims=True)
    marginal_second = joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    ratio = joint[nonzero] / (marginal_first @ marginal_second)[nonzero]
    return float(np.sum(joint[nonzero] * np.log(ratio)))


def detail_ratio(data: np.ndarray, mask: np.ndarray, axis: int, erosion: int = 3) -> float:
    """Mean |second difference| over mean |first difference| along voxel ``axis`` inside
    ``mask`` eroded by ``erosion`` voxels (the mask's edge left out).

    About 1.1-1.3 along an axis with real 1 mm detail in brain MRI; lower (about 0.8) along an
    axis that was acquired thick and interpolated, whose intensity changes are smooth ramps.
    """
    from scipy import ndimage

    inner = np.asarray(mask, dtype=bool)
    if erosion > 0:  # scipy erodes until nothing changes for iterations < 1
        inner = ndimage.binary_erosion(inner, iterations=erosion)
    data = np.asarray(data, dtype=np.float64)
    first = np.abs(np.diff(data, axis=axis))
    second = np.abs(np.diff(data, 2, axis=axis))
    centre = [slice(None)] * 3
    centre[axis] = slice(1, -1)
    lower = [slice(None)] * 3
    lower[axis] = slice(0, -1)
    inside = inner[tuple(centre)]
    if not inside.any():
        return float("nan")
    denominator = first[tuple(lower)][inside].mean()
    return float(second[inside].mean() / denominator) if denominator > 0 else float("nan")

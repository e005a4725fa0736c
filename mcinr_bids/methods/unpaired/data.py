"""The two domains of the unpaired method as 2D planes, and the acquisition model along the
thick direction of a plane.

A thick image (slice spacing ``factor`` times its in-plane pixel size) gives *LR planes*:
every plane that contains its thick axis, rows along the thick axis (``planes_across``).  The
*HR domain* of a contrast is made of planes whose two axes are both fine: any plane of an
isotropic 3D scan (of another subject) along which the image has real detail, and the
in-plane slices of the thick scans themselves (``fine_planes``).  LR and HR never need to come
from one subject.  Intensities are normalised per image (robust percentiles inside its
foreground, as the INR does).
"""

from __future__ import annotations

import numpy as np

from mcinr_bids.core.geometry import thick_axis, voxel_sizes
from mcinr_bids.core.statistics import detail_ratio
from mcinr_bids.core.volumes import IntensityScale, Volume, automatic_foreground_mask


def slice_factor(volume: Volume) -> int:
    """Slice spacing / finest in-plane pixel size, rounded (1 for an isotropic image)."""
    sizes = voxel_sizes(volume.affine)
    axis = thick_axis(volume.affine)
    in_plane = min(s for i, s in enumerate(sizes) if i != axis)
    return max(1, int(round(sizes[axis] / in_plane)))


def normalised_image(volume: Volume, mask: np.ndarray | None = None
                     ) -> tuple[np.ndarray, IntensityScale]:
    """The image in normalised intensities (float32) and its scale."""
    mask = automatic_foreground_mask(volume.data) if mask is None else np.asarray(mask, bool)
    scale = IntensityScale.from_image(volume.data, mask)
    return scale.normalise(volume.data), scale


def planes_across(data: np.ndarray, axis: int, slicing_axis: int) -> np.ndarray:
    """The planes of a volume that contain ``axis``, one per index along ``slicing_axis``:
    shape (n, length along ``axis``, length along the remaining axis)."""
    other = ({0, 1, 2} - {axis, slicing_axis}).pop()
    return np.moveaxis(data, (slicing_axis, axis, other), (0, 1, 2))


def lr_planes(volume: Volume, mask: np.ndarray | None = None) -> list[np.ndarray]:
    """Every plane of a thick image that contains its thick axis (rows along it), normalised."""
    data, _ = normalised_image(volume, mask)
    axis = thick_axis(volume.affine)
    planes = []
    for slicing_axis in sorted({0, 1, 2} - {axis}):
        planes += list(planes_across(data, axis, slicing_axis))
    return planes


def fine_planes(volume: Volume, mask: np.ndarray | None = None,
                min_detail: float = 0.85) -> list[np.ndarray]:
    """Planes of an image that are fine along both of their axes, normalised.

    A thick image gives its in-plane slices.  An isotropic one gives the planes of every pair
    of axes along which its detail (:func:`mcinr_bids.core.statistics.detail_ratio`, relative to
    its
    best axis) is at least ``min_detail``: an axis along which the image was itself acquired
    thick and interpolated holds no HR content.
    """
    data, _ = normalised_image(volume, mask)
    foreground = automatic_foreground_mask(volume.data) if mask is None else np.asarray(mask)
    if slice_factor(volume) > 1:
        axis = thick_axis(volume.affine)
        return list(np.moveaxis(data, axis, 0))
    detail = np.array([detail_ratio(data, foreground, axis) for axis in range(3)])
    fine = [axis for axis in range(3) if detail[axis] >= min_detail * detail.max()]
    planes = []
    for slicing_axis in range(3):
        if len(set(fine) - {slicing_axis}) == 2:
            planes += list(np.moveaxis(data, slicing_axis, 0))
    return planes


class PlaneBank:
    """Random patches (rows x cols) of a set of 2D planes, mostly foreground, with flips
    (``flip_rows`` False keeps the rows' order, e.g. the slab order of point-sampled LR
    planes) and, for square patches, transposes."""

    def __init__(self, planes: list[np.ndarray], rows: int, cols: int, *,
                 flip_rows: bool = True, transpose: bool = False, min_foreground: float = 0.3):
        self.rows, self.cols = rows, cols
        self.flip_rows, self.transpose = flip_rows, transpose
        self.min_foreground = min_foreground
        self.planes = [np.ascontiguousarray(p, dtype=np.float32) for p in planes
                       if p.shape[0] >= rows and p.shape[1] >= cols
                       and float((p > 0.1).mean()) >= 0.1]
        if not self.planes:
            raise ValueError(f"no plane of at least {rows} x {cols} pixels with foreground")

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` patches, shape (count, rows, cols), float32."""
        patches = np.empty((count, self.rows, self.cols), dtype=np.float32)
        for index in range(count):
            for _ in range(20):  # a few tries for a patch that is mostly brain
                plane = self.planes[rng.integers(len(self.planes))]
                top = rng.integers(plane.shape[0] - self.rows + 1)
                left = rng.integers(plane.shape[1] - self.cols + 1)
                patch = plane[top:top + self.rows, left:left + self.cols]
                if float((patch > 0.1).mean()) >= self.min_foreground:
                    break
            if self.flip_rows and rng.random() < 0.5:
                patch = patch[::-1]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if self.transpose and self.rows == self.cols and rng.random() < 0.5:
                patch = patch.T
            patches[index] = patch
        return patches


def slab_centre(factor: int, profile: str) -> float:
    """Row (in HR pixels) of the first LR row's sample within its slab of ``factor`` rows:
    the slab's middle for ``box``, the middle row for ``point``."""
    return (factor - 1) / 2 if profile == "box" else float(factor // 2)


def degrade(images, factor: int, profile: str):
    """The acquisition along the rows: (B, 1, H, W) -> (B, 1, H / factor, W), the mean of
    each slab of ``factor`` rows (``box``) or its middle row (``point``)."""
    batch, channels, height, width = images.shape
    if profile == "box":
        return images.reshape(batch, channels, height // factor, factor, width).mean(3)
    return images[:, :, factor // 2::factor]


def cubic_weights(high: int, low: int, factor: int, profile: str) -> np.ndarray:
    """(high, low) matrix of cubic-convolution weights (Keys, a = -1/2: exact for quadratics)
    from ``low`` LR rows to ``high`` HR rows; HR row i lies at LR row (i - slab_centre) /
    factor, rows beyond the ends repeat the end rows."""
    position = (np.arange(high) - slab_centre(factor, profile)) / factor
    base = np.floor(position).astype(int)
    weights = np.zeros((high, low))
    for tap in range(-1, 3):
        distance = np.abs(position - (base + tap))
        kernel = np.where(distance <= 1, 1.5 * distance**3 - 2.5 * distance**2 + 1,
                          np.where(distance < 2, -0.5 * distance**3 + 2.5 * distance**2
                                   - 4 * distance + 2, 0.0))
        np.add.at(weights, (np.arange(high), np.clip(base + tap, 0, low - 1)), kernel)
    return weights


def upsample(images, factor: int, profile: str):
    """Cubic interpolation along the rows back onto the HR rows: (B, 1, h, W) ->
    (B, 1, h * factor, W) (:func:`cubic_weights`)."""
    import torch

    height = images.shape[2]
    weights = torch.as_tensor(cubic_weights(height * factor, height, factor, profile),
                              dtype=images.dtype, device=images.device)
    return torch.einsum("ij,bcjw->bciw", weights, images)

"""Images, masks and training samples in world (scanner millimetre) coordinates.

Pure numpy/scipy/nibabel.  Low-resolution (LR) data are never resampled: each LR voxel centre
becomes one training sample at its world position (after an optional rigid world-to-world transform
into the common space).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mcinr_bids.core.geometry import (
    apply_transform,
    bounding_box,
    voxel_sizes,
    world_coordinates,
)


class InputError(ValueError):
    """Bad input: the message names the file and says how to fix it."""


@dataclass
class Volume:
    """One 3D image: ``data`` of shape (I, J, K), float32, and its voxel-to-world ``affine``."""

    data: np.ndarray
    affine: np.ndarray
    name: str = "image"
    path: str | None = None
    #: slices kept out of every fit (``--qc-holdout``): (voxel axis, boolean per slice); their
    #: ``data`` hold an interpolation from the other slices, never the acquired values
    held_out: tuple[int, np.ndarray] | None = None
    #: thick slices: the slice thickness (mm; the BIDS sidecar's ``SliceThickness``) when it
    #: differs from the slice spacing (gaps, or overlap); None = the voxel size along the thick
    #: axis (contiguous slices)
    slice_thickness_mm: float | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)

    @property
    def voxel_sizes(self) -> np.ndarray:
        return voxel_sizes(self.affine)


def automatic_foreground_mask(data: np.ndarray) -> np.ndarray:
    """Foreground of an image without a given mask, shape as ``data``.

    Images whose background is one constant value (skull-stripped or zero-filled: at least 1 %
    of the voxels sit exactly at the minimum) use everything above it; other images use half of
    Otsu's threshold (so that dark tissue such as CSF stays in).  Small gaps are closed, the
    largest connected component is kept and its holes are filled.
    """
    from skimage.filters import threshold_otsu

    minimum = float(data.min())
    at_minimum = data <= minimum
    if at_minimum.mean() >= 0.01:
        mask = ~at_minimum
    else:
        mask = data > minimum + 0.5 * (threshold_otsu(data) - minimum)
    # close small gaps; padding keeps the closing from eroding slices at the array's border
    mask = ndimage.binary_closing(np.pad(mask, 2, mode="edge"), iterations=2)[2:-2, 2:-2, 2:-2]
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)


def dilate_mask_mm(mask: np.ndarray, affine: np.ndarray, distance_mm: float) -> np.ndarray:
    """Dilate ``mask`` by ``distance_mm`` (an ellipsoid in voxel units of each axis)."""
    if distance_mm <= 0:
        return mask
    radius = np.floor(distance_mm / voxel_sizes(affine)).astype(int)
    if not radius.any():
        return mask
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    structure = sum((g / max(r, 1)) ** 2 for g, r in zip(grids, radius)) <= 1.0
    return ndimage.binary_dilation(mask, structure=structure)


def observed_region(volume: Volume, mask: np.ndarray, dilation_mm: float) -> np.ndarray:
    """The voxels of ``volume`` that a reconstruction's data term uses: its foreground ``mask``
    dilated by ``dilation_mm``, less any held-out slices (:attr:`Volume.held_out`)."""
    region = dilate_mask_mm(np.asarray(mask, dtype=bool), volume.affine, dilation_mm)
    if volume.held_out is not None:
        axis, held = volume.held_out
        shape = [1, 1, 1]
        shape[axis] = len(held)
        region = region & ~np.asarray(held, dtype=bool).reshape(shape)
    return region


def field_of_view(volumes: list[Volume], transforms: list | None = None) -> np.ndarray:
    """Union of the world bounding boxes of all voxel centres; shape (2, 3): low, high corners."""
    return bounding_box([(v.shape, v.affine) for v in volumes], transforms)


def check_overlap(volumes: list[Volume], transforms: list | None = None) -> None:
    """Raise :class:`InputError` when a volume's field of view misses all the others."""
    if len(volumes) < 2:
        return
    transforms = transforms or [None] * len(volumes)
    boxes = [field_of_view([v], [t]) for v, t in zip(volumes, transforms)]
    for index, box in enumerate(boxes):
        others = [b for j, b in enumerate(boxes) if j != index]
        if not any(np.all(box[0] <= other[1]) and np.all(other[0] <= box[1]) for other in others):
            volume = volumes[index]
            raise InputError(
                f"{volume.path or volume.name}: its field of view does not overlap any other "
                "image. Check that all images belong to the same subject and session, or give "
                "the rigid transforms that align them."
            )


@dataclass
class CoordinateNormaliser:
    """Maps world millimetres to [-1, 1] per axis over a padded bounding box.

    One instance is computed from the training images and stored with the model, so training and
    prediction use exactly the same mapping.
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_volumes(cls, volumes: list[Volume], transforms: list | None = None,
                     padding_mm: float | None = None, masks: list | None = None,
                     dilation_mm: float = 0.0) -> CoordinateNormaliser:
        """The box over every image's field of view or, with ``masks``, over the voxels the fit
        samples (each mask dilated by ``dilation_mm``: :func:`observed_region`), padded."""
        if masks is None:
            box = field_of_view(volumes, transforms)
        else:
            grids = []
            for volume, mask in zip(volumes, masks):
                voxels = np.argwhere(observed_region(volume, mask, dilation_mm))
                if len(voxels) == 0:
                    voxels = np.array([[0, 0, 0], np.asarray(volume.shape) - 1])
                low = voxels.min(0)
                corner = np.eye(4)
                corner[:3, 3] = low
                grids.append((tuple(voxels.max(0) - low + 1), volume.affine @ corner))
            box = bounding_box(grids, transforms)
        if padding_mm is None:  # half the largest voxel, so every voxel lies inside the box
            padding_mm = max(float(v.voxel_sizes.max()) for v in volumes) / 2 + 1.0
        return cls(low=box[0] - padding_mm, high=box[1] + padding_mm)

    @property
    def extent_mm(self) -> np.ndarray:
        return self.high - self.low

    def normalise(self, world: np.ndarray) -> np.ndarray:
        """World mm (M, 3) to normalised coordinates in [-1, 1] (M, 3), float32."""
        return (2.0 * (world - self.low) / self.extent_mm - 1.0).astype(np.float32)

    def to_dict(self) -> dict:
        return {"low": [float(v) for v in self.low], "high": [float(v) for v in self.high]}

    @classmethod
    def from_dict(cls, values: dict) -> CoordinateNormaliser:
        return cls(low=np.asarray(values["low"], dtype=np.float64),
                   high=np.asarray(values["high"], dtype=np.float64))


@dataclass
class IntensityScale:
    """Robust per-image intensity normalisation: ``normalised = (value - offset) / scale``."""

    offset: float
    scale: float
    background: float = 0.0

    @classmethod
    def from_image(cls, data: np.ndarray, mask: np.ndarray,
                   percentiles: tuple[float, float] = (0.5, 99.5)) -> IntensityScale:
        inside = data[mask]
        low, high = np.percentile(inside, percentiles)
        if high <= low:
            low, high = float(inside.min()), float(inside.max())
        if high <= low:
            high = low + 1.0
        outside = data[~mask]
        background = float(np.median(outside)) if outside.size else float(low)
        return cls(offset=float(low), scale=float(high - low), background=background)

    def normalise(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.offset) / self.scale).astype(np.float32)

    def restore(self, values: np.ndarray) -> np.ndarray:
        return (values * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict:
        return {"offset": self.offset, "scale": self.scale, "background": self.background}


# An output point is foreground where the linearly interpolated mask of every image covering it
# is above zero: within one voxel of the (dilated) mask along each axis.  Along a thick image's
# slice axis that reaches the next slice, the one its mask leaves out, and the other images'
# masks trim it; with the 0.5 level used before, the brain's rim between a foreground slice and
# a background slice was cut off (set to the background: on the gli decimated pair 2,600 brain
# voxels, -0.28 dB on the T1c, benchmarks/RESULTS.md).  The level leaves float32 rounding
# (grid_sample on the device, ~1e-7 where the mask is 0) far below it.
FOREGROUND_LEVEL = 1e-3


def mask_values_at(points: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                   transform: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation of a boolean ``mask`` at world ``points`` (M, 3).

    ``transform`` maps the mask image's world space into the common space (as in training).
    Returns (M,) floats in [0, 1]; points outside the image's field of view get NaN.
    """
    if transform is not None:
        points = apply_transform(np.linalg.inv(transform), points)
    voxel = apply_transform(np.linalg.inv(affine), points)
    shape = np.asarray(mask.shape)
    inside = np.all((voxel >= -0.5) & (voxel <= shape - 0.5), axis=1)
    values = ndimage.map_coordinates(mask.astype(np.float32), voxel.T, order=1, mode="nearest")
    values[~inside] = np.nan
    return values


def output_foreground(points: np.ndarray, masks: list[np.ndarray], affines: list[np.ndarray],
                      transforms: list | None = None) -> np.ndarray:
    """Foreground of output points (M, 3): inside the mask of every image that covers them.

    Each thick-slice mask is blocky along its own slice axis; intersecting the images' masks
    keeps the shape tight where their slice axes differ.
    """
    transforms = transforms or [None] * len(masks)
    foreground = np.ones(len(points), dtype=bool)
    covered = np.zeros(len(points), dtype=bool)
    for mask, affine, transform in zip(masks, affines, transforms):
        values = mask_values_at(points, mask, affine, transform)
        known = ~np.isnan(values)
        covered |= known
        foreground[known] &= values[known] >= FOREGROUND_LEVEL
    return foreground & covered


def training_samples(volumes, masks, transforms, normaliser, scales, dilation_mm):
    """Coordinates (M, 3) float32 in [-1, 1], values (M,) float32, image index (M,) int64."""
    coordinates, values, index = [], [], []
    for number, (volume, mask, transform, scale) in enumerate(
            zip(volumes, masks, transforms, scales)):
        region = observed_region(volume, mask, dilation_mm)
        voxels = np.argwhere(region)
        world = apply_transform(transform, world_coordinates(volume.affine, voxels))
        coordinates.append(normaliser.normalise(world))
        values.append(scale.normalise(volume.data[region]))
        index.append(np.full(len(voxels), number, dtype=np.int64))
    return np.concatenate(coordinates), np.concatenate(values), np.concatenate(index)


def prepare_masks(volumes: list[Volume], masks: list | None) -> list[np.ndarray]:
    """Given masks where present, automatic foreground masks elsewhere."""
    masks = list(masks) if masks is not None else [None] * len(volumes)
    if len(masks) != len(volumes):
        raise InputError(f"{len(masks)} masks were given for {len(volumes)} images; give one "
                         "mask per image or none.")
    return [automatic_foreground_mask(v.data) if m is None else np.asarray(m, dtype=bool)
            for v, m in zip(volumes, masks)]


def validate_inputs(volumes: list[Volume], settings, transforms: list | None
                    ) -> list:
    """Check the set of images against the settings; return one transform (or None) per image."""
    if not volumes:
        raise InputError("no images were given; give at least one 3D NIfTI image.")
    if settings.model in ("split", "vanilla") and len(volumes) < 2:
        raise InputError(
            f"{volumes[0].path or volumes[0].name}: --model {settings.model} joins several "
            "contrasts and needs at least 2 images; give more images or use --model single.")
    transforms = list(transforms) if transforms is not None else [None] * len(volumes)
    if len(transforms) != len(volumes):
        raise InputError(f"{len(transforms)} transforms were given for {len(volumes)} images.")
    for volume, transform in zip(volumes, transforms):
        if transform is not None and np.asarray(transform).shape != (4, 4):
            raise InputError(f"{volume.path or volume.name}: its transform must be a 4x4 "
                             "world-to-world matrix.")
    check_overlap(volumes, transforms)
    if settings.image_weights is not None and len(settings.image_weights) != len(volumes):
        raise InputError(f"{len(settings.image_weights)} image weights for {len(volumes)} images.")
    return transforms

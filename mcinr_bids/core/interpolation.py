"""Interpolation onto a grid: cubic splines through an image's world coordinates (the
classical baseline and every method's starting point), nearest-neighbour masks, slices filled
by a spline along an axis (numpy/scipy/nibabel)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.interpolate import make_interp_spline

from mcinr_bids.core.geometry import apply_transform, world_coordinates


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


def fill_slices(data: np.ndarray, axis: int, held: np.ndarray) -> np.ndarray:
    """``data`` (I, J, K) with the slices ``held`` (bool along ``axis``) replaced by a cubic
    spline along ``axis`` through the other slices (linear with fewer than 4); float64."""
    data = np.asarray(data, dtype=np.float64)
    kept = np.flatnonzero(~held)
    spline = make_interp_spline(kept, np.take(data, kept, axis=axis),
                                k=min(3, len(kept) - 1), axis=axis)
    filled = data.copy()
    index = [slice(None)] * 3
    index[axis] = np.flatnonzero(held)
    filled[tuple(index)] = spline(np.flatnonzero(held))
    return filled


def sample_on_grid(image_file: str, shape: tuple[int, int, int], affine: np.ndarray,
                   grid_to_image_world: np.ndarray | None = None, order: int = 1,
                   ) -> np.ndarray:
    """Values of an image at the voxel centres of another grid (shape, affine).

    ``grid_to_image_world`` maps the grid's world space into the image's world space (``None``:
    the same space).  ``order`` 0 is nearest neighbour, 1 linear; outside the image: 0.
    Returns a float32 array of ``shape``.
    """
    image = nib.load(image_file)
    return _sample_array(np.asanyarray(image.dataobj, dtype=np.float32), image.affine, shape,
                         affine, grid_to_image_world, order)


def _sample_array(data: np.ndarray, data_affine: np.ndarray, shape: tuple[int, int, int],
                  affine: np.ndarray, grid_to_data_world: np.ndarray | None, order: int
                  ) -> np.ndarray:
    indices = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    points = apply_transform(grid_to_data_world, world_coordinates(affine, indices))
    voxel = apply_transform(np.linalg.inv(data_affine), points)
    values = ndimage.map_coordinates(data, voxel.T, order=order, mode="constant", cval=0.0)
    return values.reshape(shape).astype(np.float32)


def mask_on_grid(mask_file: str | nib.Nifti1Image, shape: tuple[int, int, int],
                 affine: np.ndarray, grid_to_mask_world: np.ndarray | None = None
                 ) -> np.ndarray:
    """A mask (a file or an image) carried onto another grid (shape, affine): linear
    interpolation >= 0.5.

    ``grid_to_mask_world`` maps the target grid's world space into the mask's world space
    (``None``: they are the same space).  Returns a boolean array of ``shape``.
    """
    image = mask_file if isinstance(mask_file, nib.Nifti1Image) else nib.load(mask_file)
    # binarise first: a mask stored as 0/255 (or labels) must not grow when interpolated
    inside = (np.asanyarray(image.dataobj) > 0).astype(np.float32)
    return _sample_array(inside, image.affine, shape, affine, grid_to_mask_world, 1) >= 0.5

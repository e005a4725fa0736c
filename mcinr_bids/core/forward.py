"""The acquisition forward model: each low-resolution (LR) voxel is the mean of an image on an
output grid over the voxel's slice profile (the acquisition's own, :mod:`.slices`: ``box``,
uniform across the slice thickness, as a 2D acquisition records it; ``point``, the voxel centre,
as decimation samples it) at its world
position, through the image's affine and rigid transform.  Used by the JTV reconstruction, the
INR's consistency step, the held-out QC and the re-simulation check.  numpy (+ torch and scipy
where a function needs them)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from mcinr_bids.core.geometry import apply_transform, thick_axis, voxel_sizes, world_coordinates
from mcinr_bids.core.slices import slab_fraction, slice_profile
from mcinr_bids.core.volumes import Volume

if TYPE_CHECKING:  # pragma: no cover
    import torch


def profile_offsets(volume: Volume, resolution: float) -> np.ndarray:
    """Offsets (K, 3) in the LR image's voxel units of the points that represent one voxel of
    ``volume`` on an output grid of ``resolution`` mm: its centre (a ``point`` profile,
    :func:`~mcinr_bids.core.slices.slice_profile`) or K points evenly across the slice
    thickness (``box``, K = slice thickness / output voxel size; the thickness is the spacing
    unless the volume gives its own, :func:`~mcinr_bids.core.slices.slab_fraction`)."""
    axis = thick_axis(volume.affine)
    fraction = slab_fraction(volume)
    count = 1 if slice_profile(volume) == "point" else max(1, round(
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


def project(image, grid, count: int):
    """The forward model: the mean of ``image`` (I, J, K) over the ``count`` profile points of
    each LR voxel in ``grid`` (:func:`sampling_grid`); shape (M,)."""
    import torch

    return torch.nn.functional.grid_sample(
        image[None, None], grid, mode="bilinear", padding_mode="border",
        align_corners=True).view(-1, count).mean(1)


def forward_project(image: np.ndarray, affine: np.ndarray, volume: Volume, voxels: np.ndarray,
                    transform: np.ndarray | None = None) -> np.ndarray:
    """What the forward model of :func:`reconstruct_jtv` predicts at the LR voxels ``voxels``
    (M, 3) of ``volume`` from an image (I, J, K) on the grid ``affine``: shape (M,), float64
    (the re-simulation of an acquisition from a reconstruction)."""
    import torch

    offsets = profile_offsets(volume, float(voxel_sizes(affine).min()))
    grid = sampling_grid(volume, np.asarray(voxels, dtype=np.float64), offsets, transform,
                         image.shape, affine)
    with torch.no_grad():
        values = project(torch.from_numpy(np.asarray(image, dtype=np.float32)), grid,
                          len(offsets))
    return values.numpy().astype(np.float64)

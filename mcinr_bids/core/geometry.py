"""Voxel grids in world (scanner millimetre) coordinates: small pure functions on shapes and
4x4 affines (nibabel's conventions; no torch).

A grid is ``(shape, affine)``: ``shape`` (I, J, K) and the voxel-to-world ``affine`` (4, 4).
Points are arrays of shape (M, 3).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine

#: Gaussian sigma = FWHM * FWHM_TO_SIGMA
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
AXIS_LETTERS = {"R": "RL", "L": "RL", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm, shape (3,), from a 4x4 affine."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def thick_axis(affine: np.ndarray) -> int:
    """Index of the voxel axis with the largest spacing (the slice axis of a 2D acquisition)."""
    return int(np.argmax(voxel_sizes(affine)))


def thick_axis_letter(affine: np.ndarray) -> str:
    """World direction (R/L, A/P or S/I, as ``nib.aff2axcodes`` names it) of the thick axis."""
    return nib.aff2axcodes(affine)[thick_axis(affine)]


#: a voxel this many times longer along one axis than along another is a thick slice
THICK_SLICE_RATIO = 2.0


def has_thick_slices(affine: np.ndarray) -> bool:
    """Whether an image's voxels (4x4 ``affine``) are thick slices: the longest voxel side at
    least :data:`THICK_SLICE_RATIO` times the shortest (4 mm slices of 1 mm pixels)."""
    sizes = voxel_sizes(affine)
    return bool(sizes.max() >= THICK_SLICE_RATIO * sizes.min())


def voxel_axis(affine: np.ndarray, letter: str) -> int:
    """The voxel axis that runs along world direction ``letter`` (R/L, A/P or S/I)."""
    letter = letter.upper()
    if letter not in AXIS_LETTERS:
        raise ValueError(f"axis must be one of R, L, A, P, S, I; got {letter!r}")
    codes = nib.aff2axcodes(affine)
    for index, code in enumerate(codes):
        if code in AXIS_LETTERS[letter]:
            return index
    raise ValueError(f"no voxel axis runs along {letter} (orientation {''.join(codes)})")


def world_coordinates(affine: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """World (mm) coordinates of voxel ``indices`` (M, 3) under a 4x4 ``affine``; shape (M, 3)."""
    return apply_affine(np.asarray(affine, dtype=np.float64),
                        np.asarray(indices, dtype=np.float64))


def apply_transform(transform: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 world-to-world transform to points (M, 3); ``None`` is the identity."""
    if transform is None:
        return points
    return apply_affine(np.asarray(transform, dtype=np.float64), points)


def grid_coordinates(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates of every voxel centre of a grid, in C order; shape (I*J*K, 3)."""
    return world_coordinates(affine, np.indices(shape).reshape(3, -1).T)


def corner_coordinates(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates of the 8 corner voxel centres of a grid; shape (8, 3)."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    return world_coordinates(affine, corners)


def bounding_box(grids: list[tuple[tuple[int, int, int], np.ndarray]],
                 transforms: list | None = None) -> np.ndarray:
    """Union of the world bounding boxes of the voxel centres of ``grids`` (shape, affine), each
    moved by its transform (or none); shape (2, 3): low and high corners."""
    transforms = transforms or [None] * len(grids)
    points = np.concatenate([apply_transform(t, corner_coordinates(tuple(s), a))
                             for (s, a), t in zip(grids, transforms)])
    return np.stack([points.min(axis=0), points.max(axis=0)])


def isotropic_grid(box: np.ndarray, resolution: float = 1.0
                   ) -> tuple[tuple[int, int, int], np.ndarray]:
    """An axis-aligned (RAS+) grid with ``resolution`` mm voxels covering ``box`` (2, 3).

    Returns ``(shape, affine)``.
    """
    box = np.asarray(box, dtype=np.float64)
    shape = tuple(int(np.floor((box[1, i] - box[0, i]) / resolution + 1e-6)) + 1
                  for i in range(3))
    affine = np.diag([resolution, resolution, resolution, 1.0])
    affine[:3, 3] = box[0]
    return shape, affine


def acquisition_on_grid(low_affine: np.ndarray, truth_affine: np.ndarray
                        ) -> tuple[int, int, int | None]:
    """Where an LR image's slices lie on its isotropic original's grid: ``(axis, factor,
    offset)`` with the truth's voxel axis along the LR thick axis, the slice spacing in truth
    voxels, and the truth index of the first LR slice (``None`` when the slices lie between the
    truth's, as thick slabs' centres do)."""
    thick = thick_axis(low_affine)
    axis = voxel_axis(truth_affine, thick_axis_letter(low_affine))
    factor = int(round(voxel_sizes(low_affine)[thick]
                       / voxel_sizes(truth_affine)[axis]))
    first = np.linalg.solve(truth_affine, low_affine)[:3, 3][axis]
    offset = int(round(first)) % factor if abs(first - round(first)) < 0.05 else None
    return axis, max(factor, 1), offset


def same_grid(first: tuple[tuple[int, ...], np.ndarray],
              second: tuple[tuple[int, ...], np.ndarray], tolerance_mm: float = 1e-3) -> bool:
    """Whether two ``(shape, affine)`` voxel grids are one: the same shape, and no voxel centre
    more than ``tolerance_mm`` apart (images resampled into one space: co-registered)."""
    (shape_a, affine_a), (shape_b, affine_b) = first, second
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return False
    difference = np.abs(np.asarray(affine_a, dtype=np.float64)[:3]
                        - np.asarray(affine_b, dtype=np.float64)[:3])
    # bounds every voxel's displacement: the offsets' plus each axis' over the whole extent
    extent = np.asarray(shape_a[:3], dtype=np.float64)
    return float(difference[:, 3].sum() + (difference[:, :3] * extent).sum()) <= tolerance_mm


def rigid_matrix(rotation_degrees=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0),
                 centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 rotation about ``centre`` (about x, then y, then z; degrees), then a translation."""
    ax, ay, az = np.deg2rad(rotation_degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx
    centre = np.asarray(centre, dtype=np.float64)
    matrix[:3, 3] = centre - matrix[:3, :3] @ centre + np.asarray(translation_mm)
    return matrix


def masks_grid(masks: list, affines: list, transforms: list, resolution: float) -> tuple:
    """An isotropic grid over the union of the masks' fields of view (shape, affine)."""
    return isotropic_grid(bounding_box([(m.shape, a) for m, a in zip(masks, affines)],
                                       transforms), resolution)


def mask_centre(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World (RAS mm) centre of a mask's voxels: its geometric centre, not intensity-weighted."""
    return world_coordinates(affine, np.argwhere(mask).mean(axis=0)[None])[0]

"""Coordinate encodings: inputs are normalised world coordinates in [-1, 1]^3, shape (B, 3).

- :class:`FourierEncoding`: the paper's ``[cos 2 pi B x, sin 2 pi B x]`` with B (F x 3) drawn from
  N(0, scale^2) once and kept as a buffer (so it is part of the saved state).
- :class:`GridEncoding`: the fast CPU encoding.  Learned feature tables at several cell sizes
  (in mm) read with trilinear interpolation: dense for the coarse levels, hashed for the fine
  ones (Instant-NGP), optionally with axis-aligned K-planes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PLANE_AXES = ((0, 1), (0, 2), (1, 2))


class FourierEncoding(nn.Module):
    """Random Fourier features; output width ``2 * n_features``."""

    def __init__(self, n_features: int = 256, scale: float = 4.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        matrix = torch.randn(n_features, 3, generator=generator) * scale
        self.register_buffer("frequencies", matrix)
        self.out_dim = 2 * n_features

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        projection = 2 * math.pi * coordinates @ self.frequencies.T
        return torch.cat([torch.cos(projection), torch.sin(projection)], dim=-1)


def vertices_per_axis(extent_mm: np.ndarray, cell_mm: float) -> list[int]:
    """Number of grid vertices along each axis for cells of about ``cell_mm`` (at least 2)."""
    return [max(2, int(math.ceil(float(e) / cell_mm)) + 1) for e in extent_mm]


HASH_PRIMES = (1, 2654435761, 805459861)


def acquisition_frame(frame: np.ndarray, scale: float):
    """Level geometry of a grid aligned with one acquisition.

    ``frame`` (3, 4) maps normalised coordinates to that image's voxel coordinates; the grid has
    one vertex every ``scale`` voxels along each of the image's axes and covers the whole
    normalisation box.  Returns ``(matrix, offset, counts)`` mapping normalised coordinates to
    vertex positions.
    """
    corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
    voxels = corners @ frame[:, :3].T + frame[:, 3]
    low, high = voxels.min(axis=0), voxels.max(axis=0)
    counts = np.maximum(2, np.ceil((high - low) / scale).astype(np.int64) + 1)
    return frame[:, :3] / scale, (frame[:, 3] - low) / scale, counts


class GridEncoding(nn.Module):
    """Multi-resolution 3D feature tables (dense where they fit, hashed above) plus optional
    multi-resolution K-planes, all read with (tri/bi)linear interpolation.

    Parameters
    ----------
    extent_mm : (3,) array
        Size of the normalisation box in mm; sets the number of vertices of each level.
    grid_cell_sizes_mm : list of float
        Cell size of each 3D level.  A level with more vertices than ``2**hash_table_log2`` is
        stored in a hash table of that size (Instant-NGP); smaller levels are dense.
    plane_cell_sizes_mm : list of float
        Cell size of each plane level (three axis-aligned planes whose features multiply).
    grid_features, plane_features : int
        Features per vertex.
    image_frames : list of (3, 4) arrays
        For each input image, the map from normalised coordinates to its voxel coordinates.
    image_grid_scales : list of float
        For each image and each scale, one more 3D level aligned with that image's voxel grid,
        with a vertex every ``scale`` voxels: fine in plane and coarse across slices, so every
        vertex is seen by that image and its in-plane detail reaches the other contrasts.
    """

    def __init__(self, extent_mm, grid_cell_sizes_mm=(), plane_cell_sizes_mm=(),
                 grid_features: int = 2, plane_features: int = 8, hash_table_log2: int = 19,
                 image_frames=(), image_grid_scales=(),
                 generator: torch.Generator | None = None):
        super().__init__()
        extent_mm = np.asarray(extent_mm, dtype=np.float64)
        table = 2**hash_table_log2
        frames = []  # (matrix (3, 3), offset (3,), vertex counts (3,)) of each 3D level
        for cell in grid_cell_sizes_mm:
            counts = np.asarray(vertices_per_axis(extent_mm, cell))
            frames.append((np.diag((counts - 1) / 2.0), (counts - 1) / 2.0, counts))
        for frame in image_frames:
            for scale in image_grid_scales:
                frames.append(acquisition_frame(np.asarray(frame, dtype=np.float64), scale))
        self.tables = nn.ParameterList()
        self.hashed = []
        for _, _, counts in frames:
            self.hashed.append(int(np.prod(counts)) > table)
            size = table if self.hashed[-1] else int(np.prod(counts))
            values = (torch.rand(size, grid_features, generator=generator) - 0.5) * 2e-4
            self.tables.append(nn.Parameter(values))
        self.register_buffer("resolutions", torch.tensor(
            np.array([f[2] for f in frames], dtype=np.int64).reshape(-1, 3)))
        self.register_buffer("frame_matrices", torch.tensor(
            np.array([f[0] for f in frames], dtype=np.float32).reshape(-1, 3, 3)))
        self.register_buffer("frame_offsets", torch.tensor(
            np.array([f[1] for f in frames], dtype=np.float32).reshape(-1, 3)))
        self.planes = nn.ParameterList()
        for cell in plane_cell_sizes_mm:
            counts = vertices_per_axis(extent_mm, cell)
            for a, b in PLANE_AXES:
                # K-planes initialisation: features around 0.3 so the product starts smooth
                values = 0.1 + 0.4 * torch.rand(1, plane_features, counts[b], counts[a],
                                                generator=generator)
                self.planes.append(nn.Parameter(values))
        self.n_grid_levels = len(frames)
        self.n_axis_levels = len(grid_cell_sizes_mm)
        self.n_plane_levels = len(plane_cell_sizes_mm)
        self.out_dim = grid_features * self.n_grid_levels + plane_features * self.n_plane_levels

    def _level_features(self, coordinates: torch.Tensor, level: int) -> torch.Tensor:
        """Trilinearly interpolated features of one 3D level; shape (B, F)."""
        resolution = self.resolutions[level]
        table = self.tables[level]
        position = coordinates @ self.frame_matrices[level].T + self.frame_offsets[level]
        position = torch.minimum(position.clamp(min=0.0), (resolution - 1).to(position.dtype))
        base = torch.minimum(position.floor().long(), resolution - 2)
        fraction = position - base.to(position.dtype)
        if self.hashed[level]:
            strides = HASH_PRIMES
        else:
            strides = (1, int(resolution[0]), int(resolution[0] * resolution[1]))
        terms = [torch.stack([base[:, k], base[:, k] + 1], dim=-1) * strides[k]
                 for k in range(3)]  # each (B, 2)
        weights = [torch.stack([1.0 - fraction[:, k], fraction[:, k]], dim=-1) for k in range(3)]
        first, second, third = (terms[0][:, :, None, None], terms[1][:, None, :, None],
                                terms[2][:, None, None, :])
        if self.hashed[level]:
            index = (first ^ second ^ third) % table.shape[0]
        else:
            index = first + second + third
        weight = (weights[0][:, :, None, None] * weights[1][:, None, :, None]
                  * weights[2][:, None, None, :]).reshape(-1, 8, 1)
        values = table.index_select(0, index.reshape(-1)).view(-1, 8, table.shape[1])
        return (values * weight).sum(1)

    def _grid_features(self, coordinates: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._level_features(coordinates, level)
                          for level in range(self.n_grid_levels)], dim=1)

    @torch.no_grad()
    def diffuse_(self, rate: float) -> None:
        """One explicit heat-equation step on the dense axis-aligned tables, in place: every
        vertex moves ``rate`` (0-1) of the way to the mean of its six neighbours.

        Vertices that no sample reaches (between thick slices) thereby take the harmonic
        interpolation of their observed neighbours' features instead of staying where they
        were initialised.  Hashed and acquisition-aligned levels are left alone.
        """
        for level in range(self.n_axis_levels):
            if self.hashed[level]:
                continue
            nx, ny, nz = (int(n) for n in self.resolutions[level])
            table = self.tables[level]
            volume = table.view(nz, ny, nx, table.shape[1])
            volume.add_(neighbour_laplacian(volume), alpha=rate)

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        batch = coordinates.shape[0]
        features = []
        if self.n_grid_levels:
            features.append(self._grid_features(coordinates))
        for level in range(self.n_plane_levels):
            product = None
            for index, (a, b) in enumerate(PLANE_AXES):
                plane = self.planes[3 * level + index]
                location = coordinates[:, [a, b]].view(1, batch, 1, 2).to(plane.dtype)
                sampled = F.grid_sample(plane, location, mode="bilinear", align_corners=True,
                                        padding_mode="border").view(plane.shape[1], batch)
                product = sampled if product is None else product * sampled
            features.append(product.T)
        return torch.cat(features, dim=1)


def neighbour_laplacian(volume: torch.Tensor) -> torch.Tensor:
    """Mean of the six face neighbours minus the value, for a (Z, Y, X, F) table; a neighbour
    beyond a face counts as the value itself (no flux across the faces)."""
    laplacian = torch.zeros_like(volume)
    for axis in range(3):
        difference = volume.diff(dim=axis)
        laplacian.narrow(axis, 0, volume.shape[axis] - 1).add_(difference)
        laplacian.narrow(axis, 1, volume.shape[axis] - 1).sub_(difference)
    return laplacian.div_(6.0)


def build_encoding(settings, extent_mm, image_frames=(),
                   generator: torch.Generator | None = None) -> nn.Module:
    """The encoding named by ``settings.encoding``."""
    if settings.encoding == "fourier":
        return FourierEncoding(settings.fourier_features, settings.fourier_scale, generator)
    return GridEncoding(extent_mm, settings.grid_cell_sizes_mm, settings.plane_cell_sizes_mm,
                        settings.grid_features, settings.plane_features,
                        settings.hash_table_log2, image_frames,
                        settings.image_grid_scales, generator)

"""Coordinate encodings: inputs are normalised world coordinates in [-1, 1]^3, shape (B, 3).

- :class:`FourierEncoding`: the paper's ``[cos 2 pi B x, sin 2 pi B x]`` with B (F x 3) drawn from
  N(0, scale^2) once and kept as a buffer (so it is part of the saved state).
- :class:`GridEncoding`: the fast CPU encoding.  Learned feature tables at several cell sizes
  (in mm) read with trilinear interpolation: dense for the coarse levels, hashed for the fine
  ones (Instant-NGP).  Dense tables are feature volumes (F, Z, Y, X) read with
  ``grid_sample`` (one fused kernel for the interpolation and for its gradient).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class FourierEncoding(nn.Module):
    """Random Fourier features; output width ``2 * n_features``."""

    def __init__(self, n_features: int = 256, scale: float = 4.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        matrix = torch.randn(n_features, 3, generator=generator) * scale
        self.register_buffer("frequencies", matrix)
        self.out_dim = 2 * n_features

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        with full_precision(coordinates):
            projection = 2 * math.pi * coordinates.float() @ self.frequencies.float().T
            return torch.cat([torch.cos(projection), torch.sin(projection)], dim=-1)


def full_precision(tensor: torch.Tensor):
    """A context without autocast on ``tensor``'s device: coordinates and encodings stay fp32
    (bf16 would move a 1 mm grid position by up to half a vertex on a 250 mm box, and the
    model would be trained on other coordinates than it is queried with); the MLP after them
    may still run in bf16."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def vertices_per_axis(extent_mm: np.ndarray, cell_mm: float) -> list[int]:
    """Number of grid vertices along each axis for cells of about ``cell_mm`` (at least 2)."""
    return [max(2, int(math.ceil(float(e) / cell_mm)) + 1) for e in extent_mm]


HASH_PRIMES = (1, 2654435761, 805459861)


class GridEncoding(nn.Module):
    """Multi-resolution 3D feature tables (dense where they fit, hashed above), read with
    trilinear interpolation.

    Parameters
    ----------
    extent_mm : (3,) array
        Size of the normalisation box in mm; sets the number of vertices of each level.
    grid_cell_sizes_mm : list of float
        Cell size of each level.  A level with more vertices than ``2**hash_table_log2`` is
        stored in a hash table of that size (Instant-NGP); smaller levels are dense.
    grid_features : int
        Features per vertex.
    """

    #: devices whose dense levels are read with grid_sample (MPS has no 3D grid_sample)
    volume_sampling_devices = ("cpu", "cuda")

    def __init__(self, extent_mm, grid_cell_sizes_mm=(), grid_features: int = 2,
                 hash_table_log2: int = 19, generator: torch.Generator | None = None):
        super().__init__()
        extent_mm = np.asarray(extent_mm, dtype=np.float64)
        table = 2**hash_table_log2
        counts = [np.asarray(vertices_per_axis(extent_mm, cell)) for cell in grid_cell_sizes_mm]
        self.tables = nn.ParameterList()
        self.hashed = []
        #: vertex counts per level as Python ints: reading them never waits for the device
        self.level_counts = [tuple(int(n) for n in c) for c in counts]
        for level_counts in counts:
            self.hashed.append(int(np.prod(level_counts)) > table)
            # hashed: rows (table, F); dense: a volume (F, Z, Y, X), x fastest
            shape = ((table, grid_features) if self.hashed[-1]
                     else (grid_features, *(int(n) for n in reversed(level_counts))))
            values = (torch.rand(shape, generator=generator) - 0.5) * 2e-4
            self.tables.append(nn.Parameter(values))
        self.register_buffer("resolutions", torch.tensor(
            np.array(counts, dtype=np.int64).reshape(-1, 3)))
        self.register_buffer("frame_matrices", torch.tensor(
            np.array([np.diag((c - 1) / 2.0) for c in counts], dtype=np.float32).reshape(-1, 3,
                                                                                      3)))
        self.register_buffer("frame_offsets", torch.tensor(
            np.array([(c - 1) / 2.0 for c in counts], dtype=np.float32).reshape(-1, 3)))
        self.n_grid_levels = len(counts)
        self.out_dim = grid_features * self.n_grid_levels

    def _level_features(self, coordinates: torch.Tensor, level: int) -> torch.Tensor:
        """Trilinearly interpolated features of one level; shape (B, F)."""
        table = self.tables[level]
        if not self.hashed[level] and coordinates.device.type in self.volume_sampling_devices:
            return sample_volume(table, coordinates)
        resolution = self.resolutions[level]
        position = coordinates @ self.frame_matrices[level].T + self.frame_offsets[level]
        position = torch.minimum(position.clamp(min=0.0), (resolution - 1).to(position.dtype))
        base = torch.minimum(position.floor().long(), resolution - 2)
        fraction = position - base.to(position.dtype)
        if self.hashed[level]:
            strides = HASH_PRIMES
        else:  # MPS (no 3D grid_sample there): the volume's vertices as rows
            nx, ny, _ = self.level_counts[level]
            strides = (1, nx, nx * ny)
            table = table.view(table.shape[0], -1).T
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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Dense tables that earlier versions saved as rows (vertices, F) load as volumes."""
        for level, table in enumerate(self.tables):
            key = f"{prefix}tables.{level}"
            saved = state_dict.get(key)
            if (saved is not None and not self.hashed[level] and saved.dim() == 2
                    and tuple(saved.shape) == (table[0].numel(), table.shape[0])):
                state_dict[key] = saved.T.reshape(table.shape).contiguous()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def diffuse_(self, rate: float) -> None:
        """One explicit heat-equation step on the dense tables, in place: every vertex moves
        ``rate`` (0-1) of the way to the mean of its six neighbours.

        Vertices that no sample reaches (between thick slices) thereby take the harmonic
        interpolation of their observed neighbours' features instead of staying where they
        were initialised.  Hashed levels are left alone.
        """
        for level in range(self.n_grid_levels):
            if self.hashed[level]:
                continue
            volume = self.tables[level]
            volume.add_(neighbour_laplacian(volume), alpha=rate)

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        with full_precision(coordinates):
            coordinates = coordinates.float()
            return torch.cat([self._level_features(coordinates, level)
                              for level in range(self.n_grid_levels)], dim=1)


def neighbour_laplacian(volume: torch.Tensor) -> torch.Tensor:
    """Mean of the six face neighbours minus the value, for a (..., Z, Y, X) volume; a
    neighbour beyond a face counts as the value itself (no flux across the faces)."""
    laplacian = torch.zeros_like(volume)
    for axis in (-3, -2, -1):
        size = volume.shape[axis]
        difference = volume.diff(dim=axis)
        laplacian.narrow(axis, 0, size - 1).add_(difference)
        laplacian.narrow(axis, 1, size - 1).sub_(difference)
    return laplacian.div_(6.0)


#: batches of one grid_sample call on the CPU: each holds a gradient as large as the volume
#: (the 1 mm table of a brain: ~35 MB), zeroed and summed every step, so many-core machines
#: stop here (measured with 2 threads only)
MAX_CPU_BATCHES = 4


def sample_volume(volume: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of a feature volume (F, Z, Y, X) at coordinates (B, 3) in
    [-1, 1] (x, y, z: -1 and 1 are the first and last vertex, the border value beyond them);
    shape (B, F).

    On the CPU the points go in one batch per thread: ``grid_sample``'s CPU kernels run the
    batches of one call in parallel (the volume is shared between them, not copied; its
    gradient is not: one volume per batch, summed, hence at most :data:`MAX_CPU_BATCHES`)."""
    count = coordinates.shape[0]
    parts = 1
    if coordinates.device.type == "cpu":
        parts = max(1, min(torch.get_num_threads(), MAX_CPU_BATCHES, count // 4096))
    per_part = -(-count // parts)
    padding = per_part * parts - count
    if padding:
        coordinates = torch.cat([coordinates, coordinates[:padding]])
    grid = coordinates.view(parts, 1, 1, per_part, 3)
    batch = volume.unsqueeze(0).expand(parts, *volume.shape)
    features = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border",
                             align_corners=True)  # (parts, F, 1, 1, per_part)
    features = features.view(parts, volume.shape[0], per_part).transpose(1, 2)
    return features.reshape(parts * per_part, volume.shape[0])[:count]


def diffuse_features(model: nn.Module, rate: float) -> None:
    """Smooth every grid encoding's dense feature tables by one heat-equation step of ``rate``
    (decoupled from Adam, like weight decay; capped at 1, where the explicit step is stable)."""
    for module in model.modules():
        if hasattr(module, "diffuse_"):
            module.diffuse_(min(1.0, rate))


def build_encoding(settings, extent_mm, generator: torch.Generator | None = None
                   ) -> nn.Module:
    """The encoding named by ``settings.encoding``."""
    if settings.encoding == "fourier":
        return FourierEncoding(settings.fourier_features, settings.fourier_scale, generator)
    return GridEncoding(extent_mm, settings.grid_cell_sizes_mm, settings.grid_features,
                        settings.hash_table_log2, generator)

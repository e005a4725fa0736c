"""Self-supervised through-plane super-resolution of one image, learned from its own slices.

SMORE's idea (Zhao et al., IEEE TMI 2021): an image with thick slices is fine *within* its
slices, so its slices, degraded along one in-plane axis as the acquisition degraded the thick
axis (the slice profile at the slice spacing) and interpolated back by cubic splines, make
training pairs (interpolated, original) for a small 2D network, without any other data.  The
network then restores the cubic interpolation *across* the thick axis, on both families of
planes that contain that axis, and the two results are averaged.  Our own small residual CNN
(not SMORE's EDSR), trained in seconds to minutes on the CPU; torch + numpy.

Grids: the image is interpolated along its thick axis onto a *fine grid* (the image's own
voxels, the thick axis divided to the in-plane spacing), phased like the output grid where the
two are parallel, so that resampling the result onto the output grid
(:func:`~mcinr_bids.core.interpolation.cubic_on_grid`) is the identity there.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from mcinr_bids.core.geometry import apply_transform, thick_axis, voxel_sizes, world_coordinates
from mcinr_bids.core.volumes import Volume, observed_region

#: layers and channels of the residual CNN, the side of its square training patches (fine
#: voxels) and the patches per step
LAYERS, CHANNELS, PATCH, BATCH = 8, 16, 32, 16
#: voxels round the foreground's box where the network runs (its reach is LAYERS voxels; the
#: output's foreground is the images' masks dilated by a few mm)
MARGIN = 16


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on the CPU, where oneDNN's 16-channel convolutions run faster in that
    layout (on 2 cores a training step 38 ms against 43-59 ms, inference 1.2-3.8x faster;
    same arithmetic); the default layout on GPUs."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


class ResidualCNN(nn.Module):
    """``x + f(x)``, f: 3x3 convolutions with ReLUs; input and output (B, 1, H, W)."""

    def __init__(self, layers: int = LAYERS, channels: int = CHANNELS):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            modules += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        modules.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*modules)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        return planes + self.body(planes)


def sample_positions(length: int, ratio: float, offset: float) -> np.ndarray:
    """Fine-grid positions (in fine voxels) of the coarse samples ``offset + ratio * j`` that
    fall inside ``[0, length - 1]``; shape (J,)."""
    first = -math.floor(offset / ratio)
    positions = offset + ratio * np.arange(first, math.floor((length - 1 - offset) / ratio) + 1)
    return positions[(positions >= 0) & (positions <= length - 1)]


def degrade_rows(planes: np.ndarray, positions: np.ndarray, profile: str,
                 width: float) -> np.ndarray:
    """Coarse samples of planes (P, N, M) along axis 1 at ``positions`` (J,): the value there
    (``point``) or the mean across a slab of ``width`` fine voxels (``box``); shape (P, J, M)."""
    if profile == "point" or width <= 1.0:
        offsets = np.zeros(1)
    else:
        count = max(2, math.ceil(width - 1e-6))
        offsets = width * ((np.arange(count) + 0.5) / count - 0.5)
    rows = (positions[:, None] + offsets[None, :]).clip(0, planes.shape[1] - 1)
    low = np.floor(rows).astype(int)
    high = np.minimum(low + 1, planes.shape[1] - 1)
    fraction = (rows - low)[None, :, :, None]
    values = planes[:, low] * (1 - fraction) + planes[:, high] * fraction  # (P, J, K, M)
    return values.mean(axis=2)


def interpolate_rows(samples: np.ndarray, positions: np.ndarray, length: int,
                     low: float, high: float) -> np.ndarray:
    """Cubic-spline interpolation of samples (P, J, M) taken at fine positions (J,) (equally
    spaced) onto rows 0..length-1, clamped to [low, high]; shape (P, length, M), float32.

    The spline (scipy's, with the boundary of ``mode='nearest'``, as the clamped-cubic
    baseline) is linear in the samples: its matrix (length, J) is the interpolation of the
    identity, then one product."""
    count = samples.shape[1]
    ratio = positions[1] - positions[0] if count > 1 else 1.0
    coordinate = (np.arange(length) - positions[0]) / ratio
    rows, columns = np.meshgrid(coordinate, np.arange(count), indexing="ij")
    matrix = ndimage.map_coordinates(np.eye(count), [rows, columns], order=3, mode="nearest")
    values = np.einsum("kj,pjm->pkm", matrix.astype(np.float32),
                       samples.astype(np.float32, copy=False))
    return np.clip(values, low, high).astype(np.float32, copy=False)


def fine_grid(volume: Volume, output_affine: np.ndarray, transform=None
              ) -> tuple[int, float, float, int]:
    """The fine grid along the thick axis of ``volume``: (axis, ratio, phase, length).

    ``ratio`` = slice spacing / mean in-plane spacing (fine voxels per slice); ``phase`` = the
    position of the first fine voxel in the image's voxel units along the axis, chosen so that
    the output grid's first voxel falls on the fine grid; ``length`` covers every slice.
    """
    axis = thick_axis(volume.affine)
    sizes = voxel_sizes(volume.affine)
    ratio = float(sizes[axis] / np.mean(np.delete(sizes, axis)))
    origin = world_coordinates(output_affine, np.zeros((1, 3)))
    if transform is not None:
        origin = apply_transform(np.linalg.inv(transform), origin)
    start = apply_transform(np.linalg.inv(volume.affine), origin)[0, axis]
    step = 1.0 / ratio
    phase = -0.5 + ((start + 0.5) % step)  # the first fine position at or after -0.5
    length = int(math.floor((volume.shape[axis] - 0.5 - phase) / step)) + 1
    return axis, ratio, phase, length


def fine_affine(affine: np.ndarray, axis: int, ratio: float, phase: float) -> np.ndarray:
    """The affine of the fine grid: voxel k along ``axis`` at the image's voxel position
    ``phase + k / ratio`` (the other axes unchanged)."""
    fine = np.array(affine, dtype=np.float64)
    fine[:, 3] = fine[:, 3] + fine[:, axis] * phase
    fine[:, axis] = fine[:, axis] / ratio
    return fine


def training_planes(data: np.ndarray, mask: np.ndarray, axis: int, ratio: float,
                    offset: float, profile: str, width: float):
    """(inputs, targets, weights): every acquired slice of ``data`` as planes (N, M), degraded
    along each of its two axes in turn (that axis first), and each pair's foreground map."""
    slices = np.moveaxis(data, axis, 0).astype(np.float32)
    inside = np.moveaxis(mask, axis, 0)
    low, high = float(data.min()), float(data.max())
    inputs, targets, weights = [], [], []
    for planes, where in ((slices, inside), (slices.transpose(0, 2, 1),
                                             inside.transpose(0, 2, 1))):
        positions = sample_positions(planes.shape[1], ratio, offset)
        samples = degrade_rows(planes, positions, profile, width)
        inputs.append(interpolate_rows(samples, positions, planes.shape[1], low, high))
        targets.append(planes)
        weights.append(where)
    return inputs, targets, weights


def train(inputs: list, targets: list, weights: list, steps: int, seed: int,
          device: torch.device) -> ResidualCNN:
    """The residual CNN fitted to the pairs (MSE, Adam 1e-3 with cosine annealing) on square
    patches (side :data:`PATCH`, or the smallest plane's) centred on foreground pixels."""
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    layout = memory_format(device)
    network = ResidualCNN().to(device, memory_format=layout)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps))
    centres = [np.argwhere(w) for w in weights]
    usable = [k for k, c in enumerate(centres) if len(c)]
    if not usable:
        return network
    side = min(PATCH, *(min(inputs[k].shape[1:]) for k in usable))
    for _ in range(steps):
        batch_in, batch_out = [], []
        for _ in range(BATCH):
            family = usable[generator.integers(len(usable))]
            plane, row, column = centres[family][generator.integers(len(centres[family]))]
            source = inputs[family][plane]
            row = int(np.clip(row - side // 2, 0, source.shape[0] - side))
            column = int(np.clip(column - side // 2, 0, source.shape[1] - side))
            batch_in.append(source[row:row + side, column:column + side])
            batch_out.append(targets[family][plane, row:row + side, column:column + side])
        x = torch.from_numpy(np.stack(batch_in)[:, None]).to(device, memory_format=layout)
        y = torch.from_numpy(np.stack(batch_out)[:, None]).to(device, memory_format=layout)
        loss = torch.mean((network(x) - y) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return network


def plane_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of a mask (T, A, B) projected along axis 0, ``margin`` voxels wider on
    every side (clipped to the volume): slices of A and B (the whole plane when it is empty)."""
    seen = np.asarray(mask, dtype=bool).any(axis=0)
    if not seen.any():
        return slice(None), slice(None)
    box = []
    for dim in (0, 1):
        hits = np.flatnonzero(seen.any(axis=1 - dim))
        box.append(slice(max(0, hits[0] - margin), min(seen.shape[dim], hits[-1] + margin + 1)))
    return box[0], box[1]


@torch.no_grad()
def apply_across(network: ResidualCNN, volume: np.ndarray, device: torch.device,
                 box: tuple[slice, slice] = (slice(None), slice(None)),
                 chunk: int = 16) -> np.ndarray:
    """The network on the planes of a volume (T, A, B) that contain axis 0, both families
    ((T, B) planes and (T, A) planes), averaged, inside ``box`` (slices of A and B: the
    volume is returned unchanged outside it); shape (T, A, B)."""
    network.eval()
    layout = memory_format(device)
    network.to(memory_format=layout)
    inside = np.ascontiguousarray(volume[:, box[0], box[1]])
    results = []
    for order in ((1, 0, 2), (2, 0, 1)):
        planes = np.ascontiguousarray(inside.transpose(order))
        out = np.empty_like(planes)
        for start in range(0, len(planes), chunk):
            batch = torch.from_numpy(planes[start:start + chunk, None]).to(
                device, memory_format=layout)
            out[start:start + chunk] = network(batch)[:, 0].float().cpu().numpy()
        results.append(out.transpose(np.argsort(order)))
    restored = np.array(volume, dtype=np.float32)
    restored[:, box[0], box[1]] = (results[0] + results[1]) / 2
    return restored


def through_plane_image(volume: Volume, mask: np.ndarray, profile: str, steps: int,
                        output_grid: tuple, transform=None, slab_fraction: float = 1.0,
                        seed: int = 0, device: torch.device | None = None,
                        state: dict | None = None, prior: np.ndarray | None = None
                        ) -> np.ndarray:
    """One image reconstructed on ``output_grid`` = (shape, affine) by the self-supervised
    through-plane network: float32 of the grid's shape, in the image's intensity units.

    ``profile``: ``point`` (decimated data) or ``box`` (thick slices, slab ``slab_fraction``
    of the spacing); ``mask``: the image's foreground (where training patches are centred;
    slices held out by ``--qc-holdout``, already interpolated in the data, are left out);
    ``state``: the network's weights from an earlier call on this image (no training then),
    or an empty dict, which receives the weights trained here (None: train, keep nothing);
    ``prior``: another reconstruction of the image on ``output_grid`` (the INR's): the network
    restores it too, and the result is the mean of its two restorations (of the cubic
    interpolation and of the prior; the prior's gaps are filled by the cubic one where the
    grid does not cover the image).
    """
    from mcinr_bids.core.interpolation import cubic_on_grid

    device = device or torch.device("cpu")
    # --qc-holdout: no training on the held-out slices (interpolated in the data)
    mask = observed_region(volume, mask, 0.0)
    shape, output_affine = tuple(output_grid[0]), np.asarray(output_grid[1], dtype=np.float64)
    axis, ratio, phase, length = fine_grid(volume, output_affine, transform)
    scale = float(np.percentile(volume.data[mask], 99.5)) if mask.any() else 1.0
    scale = scale if scale > 0 else 1.0
    data = volume.data.astype(np.float32) / scale
    # on the fine grid, the slices sit at fine positions (j - phase) * ratio
    offset = -phase * ratio
    width = slab_fraction * ratio
    if state:
        network = ResidualCNN().to(device)
        network.load_state_dict(state)
    else:
        inputs, targets, weights = training_planes(data, mask, axis, ratio, offset % ratio,
                                                   profile, width)
        network = train(inputs, targets, weights, steps, seed, device)
        if state is not None:
            state.update({k: v.detach().cpu() for k, v in network.state_dict().items()})
    stack = np.moveaxis(data, axis, 0)
    positions = offset + ratio * np.arange(stack.shape[0])
    fine = interpolate_rows(stack.reshape(1, stack.shape[0], -1), positions, length,
                            float(data.min()), float(data.max()))
    fine = fine.reshape(length, *stack.shape[1:])
    # the network's output depends on LAYERS voxels around each pixel: run it only on the
    # foreground's box, with room for that and for the output foreground's dilation
    box = plane_box(np.moveaxis(mask, axis, 0), MARGIN)
    restored = apply_across(network, fine, device, box)
    affine = fine_affine(volume.affine, axis, ratio, phase)
    if prior is not None:
        fine_shape = list(volume.shape)
        fine_shape[axis] = length
        on_fine = cubic_on_grid(prior / scale, output_affine, tuple(fine_shape), affine,
                                clamp=False, outside=np.nan,
                                transform=None if transform is None else np.linalg.inv(transform))
        on_fine = np.moveaxis(on_fine, axis, 0)
        on_fine = np.clip(np.where(np.isnan(on_fine), fine, on_fine), data.min(), data.max())
        restored = (restored + apply_across(network, on_fine, device, box)) / 2
    restored = np.clip(restored, data.min(), data.max())
    image = cubic_on_grid(np.moveaxis(restored, 0, axis), affine, shape, output_affine,
                          clamp=True, transform=transform)
    return image * np.float32(scale)

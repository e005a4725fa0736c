"""Inference of the unpaired method: one image on its own grid, refined along its thick axis,
then into an output space."""

from __future__ import annotations

import numpy as np
import torch

from mcinr_bids.core.geometry import thick_axis
from mcinr_bids.core.interpolation import cubic_on_grid
from mcinr_bids.core.slices import slice_profile
from mcinr_bids.core.volumes import Volume
from mcinr_bids.methods.unpaired.data import (
    normalised_image,
    planes_across,
    slab_centre,
    slice_factor,
)
from mcinr_bids.methods.unpaired.train import TrainedUnpaired


def refined_affine(affine: np.ndarray, axis: int, factor: int, centre: float) -> np.ndarray:
    """Affine of the grid refined ``factor`` times along ``axis``: refined voxel k lies at LR
    voxel (k - centre) / factor."""
    step = np.eye(4)
    step[axis, axis] = 1.0 / factor
    step[axis, 3] = -centre / factor
    return np.asarray(affine, dtype=np.float64) @ step


def _tile_weights(width: int, overlap: int) -> np.ndarray:
    ramp = np.ones(width, dtype=np.float32)
    if overlap:
        edge = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
        ramp[:overlap], ramp[-overlap:] = edge, edge[::-1]
    return ramp


def generate_planes(trained: TrainedUnpaired, planes: np.ndarray, tile: int = 128,
                    overlap: int = 16, batch: int = 16) -> np.ndarray:
    """The generator on LR planes (n, h, W) in tiles of ``tile`` columns overlapping by
    ``overlap`` (linear blending): (n, h * factor, W) float32."""
    count, height, width = planes.shape
    factor = trained.factor
    output = np.zeros((count, height * factor, width), dtype=np.float32)
    total = np.zeros(width, dtype=np.float32)
    tile = min(tile, width)
    starts = list(range(0, max(width - tile, 0) + 1, max(tile - overlap, 1)))
    if starts[-1] + tile < width:
        starts.append(width - tile)
    device = next(trained.generator.parameters()).device
    with torch.no_grad():
        for left in starts:
            weights = _tile_weights(tile, overlap if len(starts) > 1 else 0)
            total[left:left + tile] += weights
            for first in range(0, count, batch):
                chunk = torch.from_numpy(np.ascontiguousarray(
                    planes[first:first + batch, :, left:left + tile]))[:, None].to(device)
                result = trained.generator(chunk)[:, 0].float().cpu().numpy()
                output[first:first + batch, :, left:left + tile] += result * weights
    return output / total


def superresolve_volume(trained: TrainedUnpaired, volume: Volume,
                        mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One thick image refined along its thick axis on its own grid and world coordinates.

    Both stacks of planes that contain the thick axis go through the generator and are
    averaged.  Returns the refined image (float32, the image's intensity units, clamped to its
    range; shape = the image's with the thick axis ``factor`` times longer) and its affine.
    """
    factor = slice_factor(volume)
    if factor != trained.factor:
        raise ValueError(f"{volume.path or volume.name}: slice factor {factor}; the model "
                         f"({trained.contrast}) was trained for {trained.factor}")
    if slice_profile(volume) != trained.profile:
        raise ValueError(f"{volume.path or volume.name}: {slice_profile(volume)} slice profile "
                         f"(SliceThickness in its sidecar); the model ({trained.contrast}) was "
                         f"trained on {trained.profile}-profile slices")
    data, scale = normalised_image(volume, mask)
    axis = thick_axis(volume.affine)
    stacks = []
    for slicing_axis in sorted({0, 1, 2} - {axis}):
        other = ({0, 1, 2} - {axis, slicing_axis}).pop()
        refined = generate_planes(trained, np.ascontiguousarray(
            planes_across(data, axis, slicing_axis)))
        stacks.append(np.moveaxis(refined, (0, 1, 2), (slicing_axis, axis, other)))
    image = np.clip(scale.restore(np.mean(stacks, axis=0)), float(volume.data.min()),
                    float(volume.data.max()))
    centre = slab_centre(factor, trained.profile)
    return image.astype(np.float32), refined_affine(volume.affine, axis, factor, centre)


def unpaired_on_grid(trained: TrainedUnpaired, volume: Volume, shape: tuple[int, int, int],
                     affine: np.ndarray, mask: np.ndarray | None = None,
                     transform: np.ndarray | None = None) -> np.ndarray:
    """:func:`superresolve_volume`, then cubic splines (clamped) onto an output grid through the
    image's world -> output-world ``transform``."""
    image, refined = superresolve_volume(trained, volume, mask)
    return cubic_on_grid(image, refined, shape, affine, clamp=True, transform=transform)


def predict_images(model_files: list[str], volumes: list[Volume], shape: tuple[int, int, int],
                   affine: np.ndarray, masks: list | None = None, transforms: list | None = None,
                   device: str = "auto") -> tuple[list[np.ndarray], list[TrainedUnpaired]]:
    """Each image through the model file of its contrast onto the grid (shape, affine)
    (:func:`unpaired_on_grid`; an image that is not thick is only interpolated, clamped cubic).
    Returns the images and the models (one per image, a file loaded once)."""
    from mcinr_bids.methods.unpaired.data import slice_factor
    from mcinr_bids.methods.unpaired.train import load_unpaired

    masks = masks or [None] * len(volumes)
    transforms = transforms or [None] * len(volumes)
    loaded: dict[str, TrainedUnpaired] = {}
    images, models = [], []
    for path, volume, mask, transform in zip(model_files, volumes, masks, transforms):
        trained = loaded.get(path) or loaded.setdefault(path, load_unpaired(path, device))
        models.append(trained)
        if slice_factor(volume) == 1:
            images.append(cubic_on_grid(volume.data, volume.affine, shape, affine, clamp=True,
                                        transform=transform))
        else:
            images.append(unpaired_on_grid(trained, volume, shape, affine, mask, transform))
    return images, models

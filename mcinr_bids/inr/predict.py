"""Prediction on output grids and checkpoints."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from ..geometry import bounding_box, isotropic_grid, world_coordinates
from ..io import atomic_write, write_tsv
from .data import CoordinateNormaliser, IntensityScale
from .fit import FittedINR, select_device
from .model import build_model
from .settings import INRSettings

CHECKPOINT_FORMAT = 1


def union_grid(fitted: FittedINR, resolution: float = 1.0):
    """Isotropic grid over the union field of view of the fitted images."""
    box = bounding_box([(m.shape, a) for m, a in zip(fitted.masks, fitted.affines)],
                       fitted.transforms)
    return isotropic_grid(box, resolution)


def reference_grid(path: str) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a reference image."""
    image = nib.load(path)
    return tuple(image.shape[:3]), image.affine


def predict_on_grid(fitted: FittedINR, shape: tuple[int, int, int], affine: np.ndarray,
                    chunk: int | None = None, fill_background: bool = True
                    ) -> tuple[list[np.ndarray], np.ndarray]:
    """Predict every contrast on a grid (shape, affine), chunk by chunk (bounded memory).

    Returns one float32 array of ``shape`` per image, in that image's intensity units, and the
    boolean output foreground.  Outside the foreground each image gets its own background value
    when ``fill_background``.
    """
    chunk = chunk or fitted.settings.prediction_chunk
    total = int(np.prod(shape))
    outputs = [np.empty(total, dtype=np.float32) for _ in range(fitted.n_images)]
    foreground = np.empty(total, dtype=bool)
    for start in range(0, total, chunk):
        flat = np.arange(start, min(total, start + chunk))
        world = world_coordinates(affine, np.stack(np.unravel_index(flat, shape), axis=1))
        values = fitted.predict(world, chunk)
        inside = fitted.foreground(world)
        foreground[flat] = inside
        for index, scale in enumerate(fitted.scales):
            column = values[:, index]
            if fill_background:
                column = np.where(inside, column, scale.background)
            outputs[index][flat] = column
    return [o.reshape(shape) for o in outputs], foreground.reshape(shape)


def _pack_mask(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.ravel()))


def _unpack_mask(packed: torch.Tensor, shape) -> np.ndarray:
    count = int(np.prod(shape))
    return np.unpackbits(packed.numpy())[:count].reshape(shape).astype(bool)


def save_checkpoint(fitted: FittedINR, path: str) -> None:
    """Everything needed to predict later; loadable with ``torch.load(weights_only=True)``."""
    state = {k: v.detach().cpu() for k, v in fitted.model.state_dict().items()}
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "settings": fitted.settings.to_dict(),
        "normaliser": fitted.normaliser.to_dict(),
        "scales": [s.to_dict() for s in fitted.scales],
        "names": list(fitted.names),
        "affines": [torch.as_tensor(a, dtype=torch.float64) for a in fitted.affines],
        "transforms": [None if t is None else torch.as_tensor(np.asarray(t), dtype=torch.float64)
                       for t in fitted.transforms],
        "mask_shapes": [list(m.shape) for m in fitted.masks],
        "masks": [_pack_mask(m) for m in fitted.masks],
        "state": state,
        "last_state": fitted.last_state,
        "selected_epoch": fitted.selected_epoch,
        "stopped_early": fitted.stopped_early,
        "stop_reason": fitted.stop_reason,
        "fit_seconds": fitted.fit_seconds,
        "device": fitted.device,
    }
    atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))


def load_checkpoint(path: str, device: str = "auto") -> FittedINR:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {checkpoint.get('format')!r}")
    settings = INRSettings.from_dict(checkpoint["settings"])
    normaliser = CoordinateNormaliser.from_dict(checkpoint["normaliser"])
    names = checkpoint["names"]
    affines = [a.numpy() for a in checkpoint["affines"]]
    transforms = [None if t is None else t.numpy() for t in checkpoint["transforms"]]
    model = build_model(len(names), settings, normaliser.extent_mm, seed=settings.seed)
    model.load_state_dict(checkpoint["state"])
    model.to(select_device(device))
    return FittedINR(
        model=model, settings=settings, normaliser=normaliser,
        scales=[IntensityScale(**s) for s in checkpoint["scales"]], names=names,
        masks=[_unpack_mask(m, s) for m, s in zip(checkpoint["masks"],
                                                   checkpoint["mask_shapes"])],
        affines=affines, transforms=transforms,
        selected_epoch=checkpoint["selected_epoch"], stopped_early=checkpoint["stopped_early"],
        stop_reason=checkpoint["stop_reason"],
        fit_seconds=checkpoint["fit_seconds"], device=checkpoint["device"],
        last_state=checkpoint["last_state"])


def write_history(history: list[dict], path: str) -> None:
    """Write the per-epoch history (loss per image, MI, lr, seconds) as a TSV, atomically."""
    if history:
        write_tsv(history, path)

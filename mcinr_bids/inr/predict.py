"""Prediction on output grids, checkpoints and atomic NIfTI writing."""

from __future__ import annotations

import os
import tempfile

import nibabel as nib
import numpy as np
import torch

from ..config import INRSettings
from .data import CoordinateNormaliser, IntensityScale, bounding_box, world_coordinates
from .fit import FittedINR, select_device
from .model import build_model

CHECKPOINT_FORMAT = 1


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


def union_grid(fitted: FittedINR, resolution: float = 1.0):
    """Isotropic grid over the union field of view of the fitted images."""
    shapes = [m.shape for m in fitted.masks]
    box = bounding_box([_GridOnly(s, a) for s, a in zip(shapes, fitted.affines)],
                       fitted.transforms)
    return isotropic_grid(box, resolution)


class _GridOnly:
    """Shape and affine of an image, enough for :func:`bounding_box`."""

    def __init__(self, shape, affine):
        self.shape, self.affine = tuple(shape), affine


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


def atomic_write(path: str, write) -> None:
    """Call ``write(temporary_path)`` then rename onto ``path``; no half-written file remains."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    suffix = ".nii.gz" if path.endswith(".nii.gz") else os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def save_nifti(data: np.ndarray, affine: np.ndarray, path: str) -> None:
    """Write a float32 (or bool as uint8) NIfTI with qform and sform set to ``affine``."""
    array = data.astype(np.uint8) if data.dtype == bool else data.astype(np.float32)
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_write(path, lambda temporary: nib.save(image, temporary))


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
    frames = [normaliser.voxel_frame(a, t) for a, t in zip(affines, transforms)]
    model = build_model(len(names), settings, normaliser.extent_mm, seed=settings.seed,
                        image_frames=frames)
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
    import csv

    if not history:
        return

    def write(temporary):
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]), delimiter="\t")
            writer.writeheader()
            writer.writerows(history)

    atomic_write(path, write)

"""Prediction on output grids and checkpoints."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from mcinr_bids.core.device import select_device
from mcinr_bids.core.geometry import bounding_box, isotropic_grid
from mcinr_bids.core.io import atomic_write, write_tsv
from mcinr_bids.core.volumes import FOREGROUND_LEVEL, CoordinateNormaliser, IntensityScale
from mcinr_bids.methods.inr.fit import FittedINR
from mcinr_bids.methods.inr.model import build_model
from mcinr_bids.methods.inr.settings import INRSettings

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


def voxel_to_normalised(fitted: FittedINR, affine: np.ndarray,
                        transform: np.ndarray | None = None) -> np.ndarray:
    """4x4 (float64) from voxel indices of a grid ``affine`` (through the world -> common-space
    ``transform``) to the model's normalised coordinates."""
    extent = fitted.normaliser.extent_mm
    scaling = np.eye(4)
    scaling[:3, :3] = np.diag(2.0 / extent)
    scaling[:3, 3] = -2.0 * fitted.normaliser.low / extent - 1.0
    moved = np.eye(4) if transform is None else np.asarray(transform, dtype=np.float64)
    return scaling @ moved @ np.asarray(affine, dtype=np.float64)


class DevicePredictor:
    """Evaluates a fitted model at voxels of a grid on the model's device: coordinates,
    foreground (each image's dilated mask, linear interpolation, >= ``FOREGROUND_LEVEL`` where
    it covers the point, as :func:`output_foreground`) and intensities in the images' units
    are computed there in float32 and copied to the host once per chunk.

    Parameters
    ----------
    fitted : FittedINR
    affine : (4, 4) array
        The grid's voxel -> world affine.
    transform : (4, 4) array or None
        World of the grid -> the model's common space (identity when None).
    """

    def __init__(self, fitted: FittedINR, affine: np.ndarray,
                 transform: np.ndarray | None = None):
        self.fitted = fitted
        self.device = next(fitted.model.parameters()).device
        self.to_model = self._matrix(voxel_to_normalised(fitted, affine, transform))
        grid_to_common = (np.eye(4) if transform is None else np.asarray(transform)) @ affine
        self.masks = []
        for mask, mask_affine, mask_transform in zip(fitted.dilated_masks(), fitted.affines,
                                                     fitted.transforms):
            common_to_mask = np.linalg.inv(
                (np.eye(4) if mask_transform is None else np.asarray(mask_transform))
                @ mask_affine)
            self.masks.append((torch.from_numpy(mask.astype(np.float32)).to(self.device),
                               self._matrix(common_to_mask @ grid_to_common), mask.shape))
        scales = fitted.scales
        self.scale = torch.tensor([s.scale for s in scales], dtype=torch.float32,
                                  device=self.device)
        self.offset = torch.tensor([s.offset for s in scales], dtype=torch.float32,
                                   device=self.device)
        self.background = torch.tensor([s.background for s in scales], dtype=torch.float32,
                                       device=self.device)

    def _matrix(self, matrix: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(matrix[:3], dtype=torch.float32, device=self.device)

    def foreground(self, voxels: torch.Tensor) -> torch.Tensor:
        """Boolean (M,) for voxel indices (M, 3) float32 on the device."""
        inside = torch.ones(len(voxels), dtype=torch.bool, device=self.device)
        covered = torch.zeros_like(inside)
        for mask, matrix, shape in self.masks:
            points = voxels @ matrix[:, :3].T + matrix[:, 3]
            size = torch.tensor(shape, dtype=torch.float32, device=self.device)
            known = ((points >= -0.5) & (points <= size - 0.5)).all(1)
            # grid_sample: (x, y, z) = (last, middle, first) axis; align_corners maps -1 / 1 to
            # the first / last voxel centre; border padding = scipy's mode="nearest"
            normalised = 2 * points / torch.clamp(size - 1, min=1) - 1
            values = torch.nn.functional.grid_sample(
                mask[None, None], normalised.flip(1).view(1, -1, 1, 1, 3), mode="bilinear",
                padding_mode="border", align_corners=True).view(-1)
            covered |= known
            inside &= ~known | (values >= FOREGROUND_LEVEL)
        return inside & covered

    def __call__(self, voxels: torch.Tensor, fill_background: bool = True) -> torch.Tensor:
        """Intensities (M, N) in each image's units at voxel indices (M, 3) on the device."""
        coordinates = voxels @ self.to_model[:, :3].T + self.to_model[:, 3]
        values = self.fitted.model(coordinates).float() * self.scale + self.offset
        if fill_background:
            values = torch.where(self.foreground(voxels)[:, None], values, self.background)
        return values


def _unravel(flat: torch.Tensor, shape) -> torch.Tensor:
    """Voxel indices (M, 3) float32 of C-order flat indices."""
    second, third = int(shape[1]), int(shape[2])
    return torch.stack([flat // (second * third), (flat // third) % second, flat % third],
                       1).float()


def predict_on_grid(fitted: FittedINR, shape: tuple[int, int, int], affine: np.ndarray,
                    chunk: int | None = None, fill_background: bool = True,
                    transform: np.ndarray | None = None
                    ) -> tuple[list[np.ndarray], np.ndarray]:
    """Predict every contrast on a grid (shape, affine), chunk by chunk on the model's device
    (bounded memory; :class:`DevicePredictor`: one copy to the host per chunk).

    Returns one float32 array of ``shape`` per image, in that image's intensity units, and the
    boolean output foreground.  Outside the foreground each image gets its own background value
    when ``fill_background``.  ``transform`` maps the grid's world to the model's common space.
    """
    chunk = chunk or fitted.settings.prediction_chunk
    predictor = DevicePredictor(fitted, affine, transform)
    total = int(np.prod(shape))
    outputs = np.empty((total, fitted.n_images), dtype=np.float32)
    foreground = np.empty(total, dtype=bool)
    fitted.model.eval()
    with torch.no_grad():
        for start in range(0, total, chunk):
            stop = min(total, start + chunk)
            voxels = _unravel(torch.arange(start, stop, device=predictor.device), shape)
            inside = predictor.foreground(voxels)
            if fill_background:  # the model runs on the foreground only (~1/4 of the grid)
                values = predictor.background.expand(len(voxels), -1).clone()
                if inside.any():
                    values[inside] = predictor(voxels[inside], fill_background=False)
            else:
                values = predictor(voxels, fill_background=False)
            outputs[start:stop] = values.cpu().numpy()
            foreground[start:stop] = inside.cpu().numpy()
    fitted.model.train()
    return [outputs[:, i].reshape(shape) for i in range(fitted.n_images)], \
        foreground.reshape(shape)


def predict_at_voxels(fitted: FittedINR, voxels: np.ndarray, affine: np.ndarray,
                      transform: np.ndarray | None = None, chunk: int | None = None
                      ) -> np.ndarray:
    """Every contrast (M, N) in its units at voxel indices (M, 3) of a grid ``affine`` (e.g.
    an input's own voxels, for its re-simulation), on the model's device, no background."""
    chunk = chunk or fitted.settings.prediction_chunk
    predictor = DevicePredictor(fitted, affine, transform)
    outputs = np.empty((len(voxels), fitted.n_images), dtype=np.float32)
    fitted.model.eval()
    with torch.no_grad():
        for start in range(0, len(voxels), chunk):
            batch = torch.as_tensor(np.asarray(voxels[start:start + chunk], dtype=np.float32),
                                    device=predictor.device)
            outputs[start:start + len(batch)] = predictor(batch, False).cpu().numpy()
    fitted.model.train()
    return outputs


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
        "through_plane_states": {str(index): state for index, state
                                 in fitted.through_plane_states.items()},
        "recipe": fitted.recipe,
    }
    atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))


def saved_settings(values: dict) -> INRSettings:
    """The settings of a checkpoint.  Models saved before 2026-12-06 kept the acquisitions'
    slice profile as ``consistency_profile`` and may leave the post-processing stages
    undecided: they are decided by that profile, as those models were run."""
    values = dict(values)
    profile = values.pop("consistency_profile", None)
    if profile is not None:
        point = profile == "point"
        for key, value in (("jtv_blend", 0.0 if point else 0.5),
                           ("through_plane_weight", 2 / 3 if point else 0.0),
                           ("destripe", point)):
            if values.get(key) is None:
                values[key] = value
    return INRSettings.from_dict(values)


def load_checkpoint(path: str, device: str = "auto") -> FittedINR:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {checkpoint.get('format')!r}")
    settings = saved_settings(checkpoint["settings"])
    normaliser = CoordinateNormaliser.from_dict(checkpoint["normaliser"])
    names = checkpoint["names"]
    affines = [a.numpy() for a in checkpoint["affines"]]
    transforms = [None if t is None else t.numpy() for t in checkpoint["transforms"]]
    model = build_model(len(names), settings, normaliser.extent_mm, seed=settings.seed)
    if hasattr(model, "alignment"):  # folded into the transforms (training only)
        del model.alignment
    model.load_state_dict({key: value for key, value in checkpoint["state"].items()
                           if not key.startswith("alignment.")})
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
        last_state=checkpoint["last_state"],
        through_plane_states={int(index): state for index, state
                              in checkpoint.get("through_plane_states", {}).items()},
        recipe=checkpoint.get("recipe", {}))


def write_history(history: list[dict], path: str) -> None:
    """Write the per-epoch history (loss per image, MI, lr, seconds) as a TSV, atomically."""
    if history:
        write_tsv(history, path)

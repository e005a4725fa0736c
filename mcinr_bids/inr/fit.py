"""Fitting a multi-contrast INR to N low-resolution images of one subject.

Training samples are LR voxel centres in world coordinates (never resampled).  The loss is the
mean squared error inside each image's (dilated) foreground, balanced so that every image weighs
the same whatever its voxel count, optionally through a Gaussian slice profile (``psf``).  Early
stopping watches the mutual information (MI) between the predicted contrasts on a fixed random set
of foreground points of the 1 mm output grid.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..config import INRSettings
from ..metrics import mutual_information
from .data import (
    CoordinateNormaliser,
    InputError,
    IntensityScale,
    Volume,
    apply_transform,
    automatic_foreground_mask,
    check_overlap,
    dilate_mask_mm,
    output_foreground,
    world_coordinates,
)
from .model import build_model

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def select_device(requested: str = "auto") -> torch.device:
    """``cuda``, then ``mps``, then ``cpu`` for ``auto``; otherwise the device asked for."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; "
                         "use --device auto or cpu.")
    return torch.device(requested)


@dataclass
class FittedINR:
    """A fitted model with everything needed to predict in original intensity units."""

    model: nn.Module
    settings: INRSettings
    normaliser: CoordinateNormaliser
    scales: list[IntensityScale]
    names: list[str]
    masks: list[np.ndarray]
    affines: list[np.ndarray]
    transforms: list[np.ndarray | None]
    history: list[dict] = field(default_factory=list)
    selected_epoch: int | None = None
    stopped_early: bool = False
    fit_seconds: float = 0.0
    device: str = "cpu"
    last_state: dict | None = None
    stop_reason: str = "epochs"
    _dilated_masks: list | None = field(default=None, repr=False)

    @property
    def n_images(self) -> int:
        return len(self.names)

    def predict_normalised(self, world: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Model output at world points (M, 3) in normalised intensities; shape (M, N)."""
        chunk = chunk or self.settings.prediction_chunk
        device = next(self.model.parameters()).device
        coordinates = self.normaliser.normalise(world)
        outputs = []
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(coordinates), chunk):
                batch = torch.from_numpy(coordinates[start:start + chunk]).to(device)
                outputs.append(self.model(batch).float().cpu().numpy())
        self.model.train()
        if not outputs:
            return np.zeros((0, self.n_images), dtype=np.float32)
        return np.concatenate(outputs)

    def predict(self, world: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Prediction at world points (M, 3) in each input's own intensity units; shape (M, N)."""
        normalised = self.predict_normalised(world, chunk)
        return np.stack([scale.restore(normalised[:, i]) for i, scale in enumerate(self.scales)],
                        axis=1)

    def foreground(self, world: np.ndarray) -> np.ndarray:
        """Boolean (M,): inside every covering image's dilated foreground mask."""
        if self._dilated_masks is None:
            self._dilated_masks = [dilate_mask_mm(m, a, self.settings.foreground_dilation_mm)
                                   for m, a in zip(self.masks, self.affines)]
        return output_foreground(world, self._dilated_masks, self.affines, self.transforms)


def prepare_masks(volumes: list[Volume], masks: list | None) -> list[np.ndarray]:
    """Given masks where present, automatic foreground masks elsewhere."""
    masks = list(masks) if masks is not None else [None] * len(volumes)
    if len(masks) != len(volumes):
        raise InputError(f"{len(masks)} masks were given for {len(volumes)} images; give one "
                         "mask per image or none.")
    return [automatic_foreground_mask(v.data) if m is None else np.asarray(m, dtype=bool)
            for v, m in zip(volumes, masks)]


def validate_inputs(volumes: list[Volume], settings: INRSettings, transforms: list | None
                    ) -> list:
    """Check the set of images against the settings; return one transform (or None) per image."""
    if not volumes:
        raise InputError("no images were given; give at least one 3D NIfTI image.")
    if settings.model in ("split", "vanilla") and len(volumes) < 2:
        raise InputError(
            f"{volumes[0].path or volumes[0].name}: --model {settings.model} joins several "
            "contrasts and needs at least 2 images; give more images or use --model single.")
    transforms = list(transforms) if transforms is not None else [None] * len(volumes)
    if len(transforms) != len(volumes):
        raise InputError(f"{len(transforms)} transforms were given for {len(volumes)} images.")
    for volume, transform in zip(volumes, transforms):
        if transform is not None and np.asarray(transform).shape != (4, 4):
            raise InputError(f"{volume.path or volume.name}: its transform must be a 4x4 "
                             "world-to-world matrix.")
    check_overlap(volumes, transforms)
    if settings.image_weights is not None and len(settings.image_weights) != len(volumes):
        raise InputError(f"{len(settings.image_weights)} image weights for {len(volumes)} images.")
    return transforms


def training_samples(volumes, masks, transforms, normaliser, scales, dilation_mm):
    """Coordinates (M, 3) float32 in [-1, 1], values (M,) float32, image index (M,) int64."""
    coordinates, values, index = [], [], []
    for number, (volume, mask, transform, scale) in enumerate(
            zip(volumes, masks, transforms, scales)):
        region = dilate_mask_mm(mask, volume.affine, dilation_mm)
        voxels = np.argwhere(region)
        world = apply_transform(transform, world_coordinates(volume.affine, voxels))
        coordinates.append(normaliser.normalise(world))
        values.append(scale.normalise(volume.data[region]))
        index.append(np.full(len(voxels), number, dtype=np.int64))
    return np.concatenate(coordinates), np.concatenate(values), np.concatenate(index)


def slice_profile_factors(volumes, transforms, normaliser) -> np.ndarray:
    """Per image, a 3x3 matrix L with offsets = z @ L.T (z ~ N(0, I)) drawing points from a
    Gaussian slice profile whose FWHM is one voxel along every voxel axis (slice thickness
    along the thick axis, pixel size in plane), in normalised coordinates; shape (N, 3, 3)."""
    factors = []
    for volume, transform in zip(volumes, transforms):
        linear = volume.affine[:3, :3] * FWHM_TO_SIGMA
        if transform is not None:
            linear = np.asarray(transform)[:3, :3] @ linear
        factors.append(np.diag(2.0 / normaliser.extent_mm) @ linear)
    return np.stack(factors).astype(np.float32)


def mutual_information_points(volumes, fitted: FittedINR, count: int, seed: int) -> np.ndarray:
    """A fixed random set (at most ``count``) of foreground points of the 1 mm output grid."""
    rng = np.random.default_rng(seed + 7919)
    low = np.ceil(fitted.normaliser.low)
    high = np.floor(fitted.normaliser.high)
    candidates = rng.integers(low, high + 1, size=(4 * count, 3)).astype(np.float64)
    candidates = np.unique(candidates, axis=0)
    rng.shuffle(candidates)
    inside = fitted.foreground(candidates)
    return candidates[inside][:count]


def fitted_frames(normaliser, volumes, transforms) -> list[np.ndarray]:
    """Per image, the (3, 4) map from normalised coordinates to its voxel coordinates."""
    return [normaliser.voxel_frame(v.affine, t) for v, t in zip(volumes, transforms)]


def smoothness_term(model, coordinates, gap_jitter, neighbour_scale, device) -> torch.Tensor:
    """Stochastic smoothness of the encoded features: random points near the training samples
    (anywhere in the gaps between slices) against points about one smoothing distance away."""
    count = max(1, coordinates.shape[0] // 4)
    anchors = coordinates[:count] + (torch.rand(count, 3, device=device) * 2 - 1) * gap_jitter
    neighbours = anchors + torch.randn(count, 3, device=device) * neighbour_scale
    return model.feature_smoothness(anchors, neighbours)


def parameter_groups(model: nn.Module, feature_decay: float) -> list[dict]:
    """Learned feature tables (decoupled weight decay ``feature_decay``) and everything else
    (no decay)."""
    features, others = [], []
    for name, parameter in model.named_parameters():
        is_feature = ".tables." in f".{name}" or ".planes." in f".{name}"
        (features if is_feature else others).append(parameter)
    groups = [{"params": others, "weight_decay": 0.0}]
    if features:
        groups.append({"params": features, "weight_decay": feature_decay})
    return groups


def diffuse_features(model: nn.Module, rate: float) -> None:
    """Smooth every grid encoding's dense feature tables by one heat-equation step of ``rate``
    (decoupled from Adam, like weight decay; capped at 1, where the explicit step is stable)."""
    for module in model.modules():
        if hasattr(module, "diffuse_"):
            module.diffuse_(min(1.0, rate))


def informed_cell_sizes(cell_sizes_mm: list[float], finest_spacing_mm: float) -> list[float]:
    """The grid levels that the samples can inform: cells no finer than the finest voxel spacing
    of the inputs divided by sqrt(2); the coarsest level always stays.

    A level finer than that has several vertices between neighbouring samples in every direction:
    no sample decides them, they only cost time (on 3 mm data the 1 mm table is 27 times the
    samples).  Inputs with a voxel size of 1 mm or finer in some direction keep every level of
    the presets.
    """
    limit = finest_spacing_mm / np.sqrt(2.0)
    kept = [float(c) for c in cell_sizes_mm if c >= limit]
    if not kept and cell_sizes_mm:
        kept = [float(max(cell_sizes_mm))]
    return kept


def plateau_reached(values: list[float], window: int, tolerance: float) -> bool:
    """The paper's rule: MI varied by less than ``tolerance`` (relative) over ``window`` epochs."""
    if len(values) < window + 1:
        return False
    recent = np.asarray(values[-(window + 1):])
    scale = max(abs(float(recent.mean())), 1e-12)
    return float(recent.max() - recent.min()) / scale < tolerance


def pairwise_mutual_information(predictions: np.ndarray, bins: int) -> float:
    """Mean MI over all pairs of columns of (M, N) predictions; NaN for one column."""
    pairs = list(itertools.combinations(range(predictions.shape[1]), 2))
    if not pairs:
        return float("nan")
    return float(np.mean([mutual_information(predictions[:, a], predictions[:, b], bins)
                          for a, b in pairs]))


def fit_inr(volumes: list[Volume], settings: INRSettings, masks: list | None = None,
            transforms: list | None = None, progress: bool = False,
            epoch_callback: Callable[[int, FittedINR], dict | None] | None = None) -> FittedINR:
    """Fit one INR to all ``volumes`` (N >= 1) at once.

    Parameters
    ----------
    volumes : list of Volume
        LR images, each on its own grid; never resampled.
    settings : INRSettings
    masks : list of (I, J, K) bool arrays or None
        Brain masks on each image's grid; automatic foreground masks where None.
    transforms : list of 4x4 arrays or None
        Rigid world-to-world transforms taking each image's world space to the common space.
    progress : bool
        Show a tqdm progress bar (epoch, loss per image, MI).
    epoch_callback : callable(epoch, fitted) -> dict or None
        Called after each epoch; a returned dict is added to that epoch's history row.

    Returns
    -------
    FittedINR
        With the model in its selected state (the epoch early stopping picked, else the last) and
        the last state kept in ``last_state``.  Its ``settings`` are the ones used: ``settings``
        without the grid levels finer than the data can inform (:func:`informed_cell_sizes`).
    """
    settings.validate()
    transforms = validate_inputs(volumes, settings, transforms)
    finest_spacing = min(float(v.voxel_sizes.min()) for v in volumes)
    settings = dataclasses.replace(
        settings,
        grid_cell_sizes_mm=informed_cell_sizes(settings.grid_cell_sizes_mm, finest_spacing),
        plane_cell_sizes_mm=informed_cell_sizes(settings.plane_cell_sizes_mm, finest_spacing))
    masks = prepare_masks(volumes, masks)
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    device = select_device(settings.device)
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)

    normaliser = CoordinateNormaliser.from_volumes(volumes, transforms)
    scales = [IntensityScale.from_image(v.data, m, tuple(settings.intensity_percentiles))
              for v, m in zip(volumes, masks)]
    coordinates, values, image_index = training_samples(
        volumes, masks, transforms, normaliser, scales, settings.foreground_dilation_mm)
    n_images = len(volumes)
    counts = np.bincount(image_index, minlength=n_images).astype(np.float64)
    weights = np.asarray(settings.image_weights or [1.0] * n_images, dtype=np.float64)
    sample_weight = (weights * len(values) / (n_images * counts)).astype(np.float32)

    model = build_model(n_images, settings, normaliser.extent_mm, seed=settings.seed,
                        image_frames=fitted_frames(normaliser, volumes, transforms)).to(device)
    fitted = FittedINR(model=model, settings=settings, normaliser=normaliser, scales=scales,
                       names=[v.name for v in volumes], masks=masks,
                       affines=[v.affine for v in volumes], transforms=transforms,
                       device=str(device))

    coordinates_t = torch.from_numpy(coordinates).to(device)
    values_t = torch.from_numpy(values).to(device)
    index_t = torch.from_numpy(image_index).to(device)
    sample_weight_t = torch.from_numpy(sample_weight).to(device)
    profile_t = torch.from_numpy(slice_profile_factors(volumes, transforms, normaliser)).to(device)

    n_samples = len(values)
    # small images: shrink the batch so that an epoch still makes min_steps_per_epoch updates
    batch_size = settings.batch_size
    if settings.min_steps_per_epoch:
        batch_size = min(batch_size, max(256, -(-n_samples // settings.min_steps_per_epoch)))
    steps_per_epoch = max(1, -(-n_samples // batch_size))
    optimiser = torch.optim.AdamW(parameter_groups(model, settings.feature_decay),
                                  lr=settings.learning_rate,
                                  fused=device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=settings.epochs * steps_per_epoch)
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    use_bf16 = device.type == "cuda"

    # smoothness anchors: training points moved anywhere within half the largest slice spacing
    # (so gaps between slices are covered); neighbours one smoothness_distance_mm away
    largest_spacing = max(float(v.voxel_sizes.max()) for v in volumes)
    gap_jitter_t = torch.from_numpy(
        (largest_spacing / normaliser.extent_mm).astype(np.float32)).to(device)
    neighbour_scale_t = torch.from_numpy(
        (2 * settings.smoothness_distance_mm / normaliser.extent_mm).astype(np.float32)).to(device)
    mi_points = mutual_information_points(volumes, fitted, settings.mi_points, settings.seed)
    mi_values: list[float] = []
    selected_state = None
    start = time.perf_counter()
    epochs = range(settings.epochs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(epochs, desc="INR fit", unit="epoch")
        epochs = bar
    for epoch in epochs:
        epoch_start = time.perf_counter()
        order = torch.randperm(n_samples, generator=generator).to(device)
        squared_error_sum = torch.zeros(n_images, dtype=torch.float64, device=device)
        samples_seen = torch.zeros(n_images, dtype=torch.float64, device=device)
        for step in range(steps_per_epoch):
            if (settings.time_limit_seconds is not None
                    and time.perf_counter() - start > settings.time_limit_seconds):
                fitted.stop_reason = "time limit"
                break
            batch = order[step * batch_size:(step + 1) * batch_size]
            batch_coordinates = coordinates_t[batch]
            batch_image = index_t[batch]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                enabled=use_bf16):
                if settings.psf:
                    noise = torch.randn(settings.psf_samples, len(batch), 3, device=device,
                                        generator=None)
                    offsets = torch.einsum("kbj,bij->kbi", noise, profile_t[batch_image])
                    points = (batch_coordinates.unsqueeze(0) + offsets).reshape(-1, 3)
                    output = model(points).reshape(settings.psf_samples, len(batch), -1)
                    output = output.float().mean(dim=0)
                else:
                    output = model(batch_coordinates).float()
            prediction = output.gather(1, batch_image.unsqueeze(1)).squeeze(1)
            error = (prediction - values_t[batch]) ** 2
            loss = (error * sample_weight_t[batch_image]).mean()
            if settings.smoothness > 0:
                loss = loss + settings.smoothness * smoothness_term(
                    model, batch_coordinates, gap_jitter_t, neighbour_scale_t, device)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if settings.feature_diffusion > 0 and (step + 1) % settings.diffusion_every == 0:
                diffuse_features(model, scheduler.get_last_lr()[0] * settings.feature_diffusion
                                 * settings.diffusion_every)
            scheduler.step()
            squared_error_sum.index_add_(0, batch_image, error.detach().double())
            samples_seen.index_add_(0, batch_image, torch.ones_like(error, dtype=torch.float64))
        if not samples_seen.any():
            break
        train_seconds = time.perf_counter() - epoch_start

        mi_start = time.perf_counter()
        mi = pairwise_mutual_information(fitted.predict_normalised(mi_points), settings.mi_bins)
        mi_seconds = time.perf_counter() - mi_start
        mi_values.append(mi)
        row = {"epoch": epoch + 1, "samples": int(samples_seen.sum())}
        losses = (squared_error_sum / samples_seen.clamp(min=1)).cpu().numpy().tolist()
        row.update({f"loss_{name}": loss_value for name, loss_value in zip(fitted.names, losses)})
        row.update({"mutual_information": mi, "learning_rate": scheduler.get_last_lr()[0],
                    "train_seconds": train_seconds, "mi_seconds": mi_seconds})
        fitted.history.append(row)
        if bar is not None:
            bar.set_postfix({**{n[-12:]: f"{v:.2e}" for n, v in zip(fitted.names, losses)},
                             "MI": f"{mi:.3f}"})
        fired = (n_images > 1 and epoch + 1 >= settings.min_epochs
                 and fitted.selected_epoch is None
                 and plateau_reached(mi_values, settings.mi_window, settings.mi_tolerance))
        if fired:
            fitted.selected_epoch = epoch + 1
            if settings.early_stopping:
                fitted.stopped_early = True
                fitted.stop_reason = "early stopping"
            else:
                selected_state = copy.deepcopy(model.state_dict())
        if epoch_callback is not None:
            extra = epoch_callback(epoch + 1, fitted)
            if extra:
                row.update(extra)
        if fitted.stop_reason != "epochs":
            break
    if bar is not None:
        bar.close()
    fitted.fit_seconds = time.perf_counter() - start
    fitted.last_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if selected_state is not None:
        model.load_state_dict(selected_state)
    if fitted.selected_epoch is None:
        fitted.selected_epoch = len(fitted.history)
    return fitted

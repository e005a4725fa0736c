"""Fitting a multi-contrast INR to N low-resolution images of one subject.

Training samples are LR voxel centres in world coordinates (never resampled).  The loss is the
mean squared error inside each image's (dilated) foreground, balanced so that every image weighs
the same whatever its voxel count, optionally through each voxel's slice profile (``psf``,
:mod:`.slab`).  Early
stopping watches the mutual information (MI) between the predicted contrasts on a fixed random set
of foreground points of the 1 mm output grid.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mcinr_bids.core.device import select_device
from mcinr_bids.core.slices import acquisitions, slice_profile_factors
from mcinr_bids.core.volumes import (
    CoordinateNormaliser,
    IntensityScale,
    Volume,
    dilate_mask_mm,
    output_foreground,
    prepare_masks,
    training_samples,
    validate_inputs,
)
from mcinr_bids.methods.inr import resume
from mcinr_bids.methods.inr.alignment import fold_refinement, parameter_groups
from mcinr_bids.methods.inr.encodings import diffuse_features
from mcinr_bids.methods.inr.model import build_model
from mcinr_bids.methods.inr.recipe import decide_recipe
from mcinr_bids.methods.inr.settings import INRSettings, informed_cell_sizes
from mcinr_bids.methods.inr.slab import TrainingData, predict_samples, slab_loss
from mcinr_bids.methods.inr.stopping import (
    mutual_information_points,
    mutual_information_rule,
    pairwise_mutual_information,
)


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
    resumed_from_epoch: int | None = None
    #: each image's trained through-plane network (image index -> its weights, on the CPU),
    #: kept so that another grid (the evaluation mode's, a checkpoint's) reuses it
    through_plane_states: dict = field(default_factory=dict)
    #: each image's rigid refinement by the fit (:meth:`.alignment.ImageAlignment.summary`),
    #: already folded into ``transforms``
    alignment: dict = field(default_factory=dict)
    #: the acquired-slice softening weight of each image's last output (:mod:`.softening`)
    destripe_weights: dict = field(default_factory=dict)
    #: which stages run and why (:meth:`.recipe.Recipe.to_dict`)
    recipe: dict = field(default_factory=dict)
    _dilated_masks: list | None = field(default=None, repr=False)

    @property
    def n_images(self) -> int:
        return len(self.names)

    def summary(self) -> dict:
        """The facts of the fit that sidecars, JSON files and reports record (JSON types)."""
        return {"epochs_run": len(self.history), "selected_epoch": self.selected_epoch,
                "stopped_early": self.stopped_early, "stop_reason": self.stop_reason,
                "fit_seconds": round(self.fit_seconds, 2), "device": self.device,
                # the grid levels used (those finer than the data can inform are left out)
                "grid_cell_sizes_mm": list(self.settings.grid_cell_sizes_mm),
                "model": self.settings.model, "psf": self.settings.psf,
                # the slice model used (psf unset in the settings: decided from the inputs)
                "slab_points": self.settings.psf_samples if self.settings.psf else 1,
                "consistency_steps": self.settings.consistency_steps,
                "jtv_blend": self.settings.blend_weight,
                "through_plane_weight": self.settings.network_weight,
                "seed": self.settings.seed, "resumed_from_epoch": self.resumed_from_epoch,
                "alignment_refinement": self.alignment,
                "destripe_weights": self.destripe_weights, "recipe": self.recipe}

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

    def dilated_masks(self) -> list[np.ndarray]:
        """Each image's foreground mask dilated by ``foreground_dilation_mm`` (computed once)."""
        if self._dilated_masks is None:
            self._dilated_masks = [dilate_mask_mm(m, a, self.settings.foreground_dilation_mm)
                                   for m, a in zip(self.masks, self.affines)]
        return self._dilated_masks

    def foreground(self, world: np.ndarray) -> np.ndarray:
        """Boolean (M,): inside every covering image's dilated foreground mask."""
        return output_foreground(world, self.dilated_masks(), self.affines, self.transforms)


def prepare_fit(volumes: list[Volume], settings: INRSettings, masks: list | None,
                transforms: list | None, reference: int = 0
                ) -> tuple[FittedINR, TrainingData]:
    """Check the inputs, normalise coordinates and intensities, build the model (seeded, the
    image ``reference`` fixed in its alignment) and move the training samples to the device;
    the returned FittedINR has no history yet."""
    settings.validate()
    transforms = validate_inputs(volumes, settings, transforms)
    settings, recipe = decide_recipe(settings, *acquisitions(volumes))
    finest_spacing = min(float(v.voxel_sizes.min()) for v in volumes)
    settings = dataclasses.replace(settings, grid_cell_sizes_mm=informed_cell_sizes(
        settings.grid_cell_sizes_mm, finest_spacing))
    masks = prepare_masks(volumes, masks)
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    device = select_device(settings.device)
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)

    # grid tables span the sampled voxels (~1/2 of the field of view's vertices on a brain:
    # half the optimiser's and the diffusion's time); Fourier features keep the paper's
    # coordinates over the field of view
    normaliser = CoordinateNormaliser.from_volumes(
        volumes, transforms, masks=masks if settings.encoding == "grid" else None,
        dilation_mm=settings.foreground_dilation_mm)
    scales = [IntensityScale.from_image(v.data, m, tuple(settings.intensity_percentiles))
              for v, m in zip(volumes, masks)]
    coordinates, values, image_index = training_samples(
        volumes, masks, transforms, normaliser, scales, settings.foreground_dilation_mm)
    # samples in the tables' memory order (z, then y, then x): a batch, sorted, then reads and
    # writes neighbouring vertices (a fifth less time per step on the CPU)
    order = np.lexsort(np.round(coordinates * 500.0).T)
    coordinates, values, image_index = coordinates[order], values[order], image_index[order]
    n_images = len(volumes)
    counts = np.bincount(image_index, minlength=n_images).astype(np.float64)
    weights = np.asarray(settings.image_weights or [1.0] * n_images, dtype=np.float64)
    image_weight = (weights * len(values) / (n_images * counts)).astype(np.float32)
    model = build_model(n_images, settings, normaliser.extent_mm, seed=settings.seed)
    if hasattr(model, "alignment"):
        model.alignment.fix(reference)
    model = model.to(device)
    fitted = FittedINR(model=model, settings=settings, normaliser=normaliser, scales=scales,
                       names=[v.name for v in volumes], masks=masks,
                       affines=[v.affine for v in volumes], transforms=transforms,
                       device=str(device), recipe=recipe.to_dict())
    data = TrainingData(*(torch.from_numpy(array).to(device) for array in (
        coordinates, values, image_index, image_weight,
        slice_profile_factors(volumes, transforms, normaliser, settings.psf_profile))))
    return fitted, data


def batch_layout(n_samples: int, settings: INRSettings) -> tuple[int, int]:
    """``(batch_size, steps_per_epoch)``: small images get a smaller batch, so that an epoch
    still makes ``min_steps_per_epoch`` updates."""
    batch_size = settings.batch_size
    if settings.min_steps_per_epoch:
        batch_size = min(batch_size, max(256, -(-n_samples // settings.min_steps_per_epoch)))
    return batch_size, max(1, -(-n_samples // batch_size))


def train_epoch(fitted: FittedINR, data: TrainingData, optimiser, scheduler,
                order: torch.Tensor, deadline: float | None, use_bf16: bool,
                slab: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the samples in ``order`` (through the slice profile with ``slab``, default
    ``settings.psf``); stops early (``fitted.stop_reason``) at the ``deadline`` (a
    ``time.perf_counter()`` value).  Returns the summed squared error and the number of samples
    seen per image, on the device (read once per epoch)."""
    settings, model = fitted.settings, fitted.model
    batch_size, steps = batch_layout(data.n_samples, settings)
    n_images = fitted.n_images
    device = data.values.device
    # MPS has no float64: the epoch's sums are float32 there (they only feed the history)
    total = torch.float32 if device.type == "mps" else torch.float64
    squared_error_sum = torch.zeros(n_images, dtype=total, device=device)
    samples_seen = torch.zeros(n_images, dtype=total, device=device)
    for step in range(steps):
        if deadline is not None and time.perf_counter() > deadline:
            fitted.stop_reason = "time limit"
            break
        batch = order[step * batch_size:(step + 1) * batch_size].sort().values
        image = data.image_index[batch]
        residuals = (predict_samples(model, data, batch, settings, use_bf16, slab)
                     - data.values[batch])
        error = residuals.mean(0) ** 2  # the slab mean's squared error (what is recorded)
        loss = (slab_loss(residuals, settings.psf_unbiased) * data.image_weight[image]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if settings.feature_diffusion > 0 and (step + 1) % settings.diffusion_every == 0:
            diffuse_features(model, scheduler.get_last_lr()[0] * settings.feature_diffusion
                             * settings.diffusion_every)
        scheduler.step()
        squared_error_sum.index_add_(0, image, error.detach().to(total))
        samples_seen.index_add_(0, image, torch.ones_like(error, dtype=total))
    return squared_error_sum, samples_seen


def make_optimiser(model: nn.Module, settings: INRSettings, n_samples: int,
                   device: torch.device):
    """Adam (no weight decay) with cosine annealing of the learning rate over the whole fit, or
    over each phase (point model, then slab model) when ``psf_epochs`` makes two."""
    steps_per_epoch = batch_layout(n_samples, settings)[1]
    optimiser = torch.optim.AdamW(parameter_groups(model, settings), lr=settings.learning_rate,
                                  weight_decay=0.0, fused=device.type in ("cpu", "cuda"))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR
    point_steps = settings.point_epochs * steps_per_epoch
    if not point_steps:
        return optimiser, cosine(optimiser, T_max=settings.epochs * steps_per_epoch)
    slab_steps = (settings.epochs - settings.point_epochs) * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.SequentialLR(
        optimiser, [cosine(optimiser, T_max=point_steps), cosine(optimiser, T_max=slab_steps)],
        milestones=[point_steps])
    return optimiser, scheduler


def history_row(fitted: FittedINR, epoch: int, squared_error_sum: np.ndarray,
                seen: np.ndarray, mi: float, learning_rate: float, train_seconds: float,
                mi_seconds: float, bar=None) -> dict:
    """Append the epoch's row (loss per image, MI, learning rate, seconds) to the history and
    show it on the progress ``bar``; return the row."""
    losses = (squared_error_sum / np.maximum(seen, 1)).tolist()
    row = {"epoch": epoch, "samples": int(seen.sum()),
           **{f"loss_{name}": value for name, value in zip(fitted.names, losses)},
           "mutual_information": mi, "learning_rate": learning_rate,
           "train_seconds": train_seconds, "mi_seconds": mi_seconds}
    fitted.history.append(row)
    if bar is not None:
        bar.update(1)
        bar.set_postfix({**{n[-12:]: f"{v:.2e}" for n, v in zip(fitted.names, losses)},
                         "MI": f"{mi:.3f}"})
    return row


def finish_fit(fitted: FittedINR, selected_state: dict | None, seconds: float,
               resume_file: str | None) -> FittedINR:
    """Keep the last state, load the selected one, record the time; drop the resume state."""
    fitted.fit_seconds = seconds
    if resume_file and os.path.exists(resume_file):
        os.unlink(resume_file)
    fitted.last_state = {k: v.detach().cpu().clone()
                         for k, v in fitted.model.state_dict().items()}
    if selected_state is not None:
        fitted.model.load_state_dict(selected_state)
    if hasattr(fitted.model, "alignment"):
        fold_refinement(fitted)
    if fitted.selected_epoch is None or fitted.settings.selection == "last":
        fitted.selected_epoch = len(fitted.history)
    return fitted


def progress_bar(epochs: int):
    """A tqdm bar over the fit's epochs."""
    from tqdm import tqdm

    return tqdm(total=epochs, desc="INR fit", unit="epoch")


def score_epoch(fitted: FittedINR, epoch: int, mi_points, mi_values: list[float],
                squared_error_sum: torch.Tensor, seen: np.ndarray, learning_rate: float,
                train_seconds: float, bar) -> dict:
    """The MI between the predicted contrasts after ``epoch`` (appended to ``mi_values``) and
    the epoch's history row (:func:`history_row`)."""
    mi_start = time.perf_counter()
    mi_values.append(pairwise_mutual_information(fitted.predict_normalised(mi_points),
                                                 fitted.settings.mi_bins))
    return history_row(fitted, epoch, squared_error_sum.cpu().numpy(), seen, mi_values[-1],
                       learning_rate, train_seconds, time.perf_counter() - mi_start, bar)


def fit_inr(volumes: list[Volume], settings: INRSettings, masks: list | None = None,
            transforms: list | None = None, reference: int = 0, progress: bool = False,
            epoch_callback: Callable[[int, FittedINR], dict | None] | None = None,
            resume_file: str | None = None) -> FittedINR:
    """Fit one INR to all ``volumes`` (N >= 1) at once.

    Parameters
    ----------
    volumes : list of Volume
        LR images, each on its own grid; never resampled.
    masks, transforms : lists or None
        Brain masks on each image's grid (automatic foreground masks where None); rigid
        world-to-world 4x4 transforms taking each image's world space to the common space.
    reference : int
        The image whose transform the fit's alignment refinement keeps
        (``settings.refine_alignment``); the others' refined transforms replace theirs.
    progress, epoch_callback
        A tqdm progress bar; ``epoch_callback(epoch, fitted)`` after each epoch (a returned dict
        is added to that epoch's history row).
    resume_file : str or None
        The training state is saved there after an epoch when ``settings.checkpoint_seconds``
        have passed since the last save, and removed at the end;
        a state left by an interrupted fit of the same inputs and settings is continued
        (:mod:`mcinr_bids.methods.inr.resume`).

    Returns
    -------
    FittedINR
        With the model in its selected state (the epoch early stopping picked, else the last) and
        the last state kept in ``last_state``.  Its ``settings`` are the ones used: ``settings``
        without the grid levels finer than the data can inform (:func:`informed_cell_sizes`),
        every automatic stage decided from the inputs (:func:`.recipe.decide_recipe`).
    """
    fitted, data = prepare_fit(volumes, settings, masks, transforms, reference)
    settings, model = fitted.settings, fitted.model
    device = data.values.device
    optimiser, scheduler = make_optimiser(model, settings, data.n_samples, device)
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    use_bf16 = device.type == "cuda"
    mi_points = mutual_information_points(fitted, settings.mi_points, settings.seed)
    key = resume.fingerprint(volumes, fitted.masks, fitted.transforms, settings)
    first_epoch, elapsed_before, mi_values, selected_state = resume.resume_or_start(
        resume_file, key, fitted=fitted, optimiser=optimiser, scheduler=scheduler,
        generator=generator)
    start = last_save = time.perf_counter()
    deadline = None if settings.time_limit_seconds is None else start + settings.time_limit_seconds
    bar = progress_bar(settings.epochs) if progress else None
    for epoch in range(first_epoch, settings.epochs + 1):
        if fitted.stop_reason != "epochs":  # resumed after the fit had stopped
            break
        epoch_start = time.perf_counter()
        order = torch.randperm(data.n_samples, generator=generator).to(device)
        squared_error_sum, samples_seen = train_epoch(fitted, data, optimiser, scheduler, order,
                                                      deadline, use_bf16,
                                                      settings.slab_epoch(epoch))
        seen = samples_seen.cpu().numpy()  # the epoch's one read from the device
        if not seen.any():
            break
        row = score_epoch(fitted, epoch, mi_points, mi_values, squared_error_sum, seen,
                          scheduler.get_last_lr()[0], time.perf_counter() - epoch_start, bar)
        if (mutual_information_rule(fitted, mi_values, epoch) and not settings.early_stopping
                and settings.selection == "mi"):
            selected_state = copy.deepcopy(model.state_dict())
        if epoch_callback is not None:
            row.update(epoch_callback(epoch, fitted) or {})
        if (resume_file and epoch < settings.epochs
                and time.perf_counter() - last_save >= settings.checkpoint_seconds):
            last_save = time.perf_counter()
            resume.save_state(resume_file, key=key, epoch=epoch, fitted=fitted,
                              optimiser=optimiser, scheduler=scheduler, generator=generator,
                              mi_values=mi_values, selected_state=selected_state,
                              elapsed=elapsed_before + time.perf_counter() - start)
        if fitted.stop_reason != "epochs":
            break
    if bar is not None:
        bar.close()
    return finish_fit(fitted, selected_state, elapsed_before + time.perf_counter() - start,
                      resume_file)

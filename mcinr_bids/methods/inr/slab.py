"""The slab (slice-profile) forward model of the fit: the model's value for each LR voxel at its
centre (point model) or at K points across its slice profile, and the loss of the slab mean
(which of the two: :func:`mcinr_bids.methods.inr.recipe.decide_recipe`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mcinr_bids.methods.inr.settings import INRSettings


def predict_samples(model: nn.Module, data: TrainingData, batch: torch.Tensor,
                    settings: INRSettings, use_bf16: bool, slab: bool | None = None
                    ) -> torch.Tensor:
    """The model's values for each sample of ``batch`` (indices): at the K points drawn from the
    slice profile with ``slab`` (default ``settings.psf``; shape (K, B)), else at the voxel
    centre (1, B); float32.  A model with an ``alignment`` moves each sample by its image's
    rigid refinement first (the slab's offsets are not rotated: a refinement turns by a
    fraction of a degree)."""
    coordinates = data.coordinates[batch]
    image = data.image_index[batch]
    alignment = getattr(model, "alignment", None)
    if alignment is not None:
        coordinates = alignment(coordinates, image)
    device_type = coordinates.device.type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=use_bf16):
        if settings.psf if slab is None else slab:
            shape = (settings.psf_samples, len(batch), 3)
            if settings.psf_sampling == "stratified":  # the midpoints of K equal parts
                noise = ((torch.arange(shape[0], device=coordinates.device) + 0.5) / shape[0]
                         - 0.5).view(-1, 1, 1).expand(shape)
            elif settings.psf_profile == "box":
                noise = torch.rand(shape, device=coordinates.device) - 0.5
            else:
                noise = torch.randn(shape, device=coordinates.device)
            offsets = torch.einsum("kbj,bij->kbi", noise, data.profile[image])
            if data.all_slabs:
                points = (coordinates.unsqueeze(0) + offsets).reshape(-1, 3)
                output = model(points).reshape(shape[0], len(batch), -1).float()
            else:
                output = _mixed_samples(model, coordinates, offsets,
                                        data.profile.flatten(1).any(1)[image])
        else:
            output = model(coordinates).float().unsqueeze(0)
    return output.gather(2, image.view(1, -1, 1).expand(len(output), -1, 1)).squeeze(2)


def _mixed_samples(model: nn.Module, coordinates: torch.Tensor, offsets: torch.Tensor,
                   slab: torch.Tensor) -> torch.Tensor:
    """The model at the K points (``offsets``, (K, B, 3)) of the samples whose image has a slab
    (``slab``, (B,) bool) and once at the centre of the others (a 3D image among thick ones),
    repeated K times: the same (K, B, C) values as K evaluations, at a fraction of the cost
    (and one wait for the device per step, for the split's sizes: mixed inputs only)."""
    thick = slab.nonzero().squeeze(1)
    thin = (~slab).nonzero().squeeze(1)
    count = offsets.shape[0]
    points = torch.cat(((coordinates[thick].unsqueeze(0) + offsets[:, thick]).reshape(-1, 3),
                        coordinates[thin]))
    values = model(points).float()
    split = count * len(thick)
    both = torch.cat((values[:split].reshape(count, len(thick), values.shape[1]),
                      values[split:].unsqueeze(0).expand(count, -1, -1)), dim=1)
    return both[:, torch.argsort(torch.cat((thick, thin)))]


def slab_loss(residuals: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Squared error of each voxel's slab mean from K sampled residuals (K, B).

    The square of the K-point mean is biased: it adds the profile's sampled variance / K, a
    penalty on any change within the slab.  ``unbiased`` (K >= 2) uses the mean of the products
    of distinct pairs instead, whose expectation is exactly the squared error of the mean.
    """
    count = residuals.shape[0]
    if not unbiased or count < 2:
        return residuals.mean(0) ** 2
    total = residuals.sum(0)
    return (total**2 - residuals.pow(2).sum(0)) / (count * (count - 1))


@dataclass
class TrainingData:
    """The LR voxels of every image as tensors on the fit's device (M samples)."""

    coordinates: torch.Tensor  # (M, 3) float32, normalised world coordinates
    values: torch.Tensor  # (M,) float32, normalised intensities
    image_index: torch.Tensor  # (M,) int64
    image_weight: torch.Tensor  # (N,) float32: every image weighs the same in the loss
    profile: torch.Tensor  # (N, 3, 3) float32: slice-profile factors (slice_profile_factors)
    #: whether every image has a slab (else the slab model evaluates the others' voxels once,
    #: :func:`.slab.predict_samples`); read from ``profile`` once here, never per step (a read
    #: of a device tensor's value waits for the device)
    all_slabs: bool | None = None

    def __post_init__(self) -> None:
        if self.all_slabs is None:
            self.all_slabs = bool(self.profile.flatten(1).any(1).all())

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

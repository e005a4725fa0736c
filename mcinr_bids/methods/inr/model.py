"""Multi-contrast INR models: ``split`` (shared trunk, one head per contrast, the paper's),
``vanilla`` (one trunk, N outputs) and ``single`` (an independent model per image)."""

from __future__ import annotations

import torch
from torch import nn

from mcinr_bids.methods.inr.alignment import ImageAlignment
from mcinr_bids.methods.inr.encodings import build_encoding


def multilayer_perceptron(in_dim: int, widths: list[int], out_dim: int | None = None
                          ) -> nn.Sequential:
    """Linear+ReLU for every width in ``widths``, then a final Linear to ``out_dim`` if given."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class JointINR(nn.Module):
    """Encoding + shared trunk + either one head per contrast (``split``) or one linear layer
    with ``n_outputs`` channels (``vanilla``).  Input (B, 3) in [-1, 1], output (B, n_outputs)."""

    def __init__(self, n_outputs: int, settings, extent_mm, split: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.encoding = build_encoding(settings, extent_mm, generator)
        self.trunk = multilayer_perceptron(self.encoding.out_dim,
                                           [settings.trunk_width] * settings.trunk_layers)
        width = settings.trunk_width if settings.trunk_layers else self.encoding.out_dim
        if split:
            self.heads = nn.ModuleList(
                multilayer_perceptron(width, [settings.head_width] * settings.head_layers, 1)
                for _ in range(n_outputs))
        else:
            self.heads = nn.ModuleList([nn.Linear(width, n_outputs)])

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        shared = self.trunk(self.encoding(coordinates))
        return torch.cat([head(shared) for head in self.heads], dim=1)


class SingleContrastINRs(nn.Module):
    """One independent :class:`JointINR` per image (no shared weights); output (B, n_outputs)."""

    def __init__(self, n_outputs: int, settings, extent_mm,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.models = nn.ModuleList(
            JointINR(1, settings, extent_mm, split=True, generator=generator)
            for _ in range(n_outputs))

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(coordinates) for model in self.models], dim=1)


def build_model(n_outputs: int, settings, extent_mm, seed: int = 0) -> nn.Module:
    """The model named by ``settings.model``, initialised from ``seed``; a joint model of two or
    more images carries each image's rigid refinement (``alignment``, used in training only:
    :func:`.slab.predict_samples`) when ``settings.refine_alignment``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nn.Linear initialises from the global generator
    if settings.model == "single":
        return SingleContrastINRs(n_outputs, settings, extent_mm, generator)
    model = JointINR(n_outputs, settings, extent_mm, split=settings.model == "split",
                     generator=generator)
    if settings.refine_alignment and n_outputs > 1:
        model.alignment = ImageAlignment(n_outputs, extent_mm)
    return model

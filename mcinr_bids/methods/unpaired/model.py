"""Networks and losses of the unpaired contrastive method.

Our reading of seed 003's Figure 1 with standard choices where the paper's text is not
available (each said in README): the source encoder ``f_s`` embeds LR planes after cubic
upsampling along the thick direction, a residual decoder turns its features into the HR image
``X_{s~t}`` (the LR->HR generator G = upsample + decoder(f_s(upsample))); ``f_t`` is the same
encoder applied to HR images (the shared-encoder choice of CUT, Park et al. 2020); the cycle
back to LR ``Y_{s~t~s}`` is the known acquisition model (slab mean) applied to ``X_{s~t}``.
Discriminators: a PatchGAN on images (``X_{s~t}`` vs real HR ``X_t``) and a 1x1-convolution
one on features (``f_s`` vs ``f_t``), least-squares GAN losses (Mao et al. 2017).  InfoNCE is
PatchNCE (CUT): a 2-layer projection of the features, positives at the same location, the
patch's other locations as negatives.
"""

from __future__ import annotations

import torch
from torch import nn

from mcinr_bids.methods.unpaired.data import upsample


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.LeakyReLU(0.2),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class Generator(nn.Module):
    """LR planes (B, 1, h, W) -> HR planes (B, 1, h * factor, W)."""

    def __init__(self, factor: int, profile: str, channels: int = 24, blocks: int = 3):
        super().__init__()
        self.factor, self.profile = int(factor), profile
        self.encoder = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.LeakyReLU(0.2),
                                     *[ResidualBlock(channels) for _ in range(blocks)])
        self.decoder = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)],
                                     nn.Conv2d(channels, 1, 3, padding=1))
        nn.init.zeros_(self.decoder[-1].weight)  # starts as cubic interpolation
        nn.init.zeros_(self.decoder[-1].bias)

    def upsample(self, low):
        return upsample(low, self.factor, self.profile)

    def features(self, images):
        """f_s of upsampled LR planes, f_t of HR planes: (B, C, H, W)."""
        return self.encoder(images)

    def forward(self, low):
        up = self.upsample(low)
        return up + self.decoder(self.encoder(up))


class PatchDiscriminator(nn.Module):
    """Real / fake score per overlapping image patch (PatchGAN, 3 convolutions)."""

    def __init__(self, channels: int = 24):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * channels, 1, 3, padding=1))

    def forward(self, x):
        return self.net(x)


class FeatureDiscriminator(nn.Module):
    """Source / target score per feature location (1x1 convolutions)."""

    def __init__(self, channels: int = 24):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(channels, 1, 1))

    def forward(self, x):
        return self.net(x)


class Projection(nn.Module):
    """The 2-layer projection of features before InfoNCE; unit-length outputs."""

    def __init__(self, channels: int = 24):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(),
                                 nn.Linear(channels, channels))

    def forward(self, x):
        return nn.functional.normalize(self.net(x), dim=-1)


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE over (B, N, C) unit vectors: for each query, its key at the same index is the
    positive and the batch item's N - 1 other keys the negatives; mean cross-entropy."""
    logits = queries @ keys.transpose(1, 2) / temperature  # (B, N, N)
    labels = torch.arange(queries.shape[1], device=queries.device).expand(queries.shape[0], -1)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def sample_locations(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features at flat locations ``index`` (N,): (B, N, C)."""
    return features.flatten(2)[:, :, index].transpose(1, 2)


def adversarial_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss pushing ``scores`` to 1 (real) or 0 (fake)."""
    return ((scores - (1.0 if real else 0.0)) ** 2).mean()

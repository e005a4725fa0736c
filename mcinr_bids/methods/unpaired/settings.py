"""Settings of the unpaired contrastive method (torch-free: the app's configuration composes
them without loading torch).  Defaults are sized for 2 CPU cores (benchmarks/RESULTS.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mcinr_bids.core.settings import DEVICES, PROFILE_MOVED, SettingsTable


@dataclass
class UnpairedSettings(SettingsTable):
    """Every parameter of one training run (the ``[unpaired]`` table of a settings file)."""

    TABLE: ClassVar[str] = "unpaired"
    MOVED: ClassVar[dict[str, str]] = {"profile": PROFILE_MOVED}
    SHARED: ClassVar[tuple[str, ...]] = ("device", "threads", "seed")
    #: the network's sizes, the optimiser, the loss weights and the HR domain's threshold
    ADVANCED: ClassVar[tuple[str, ...]] = (
        "channels", "blocks", "patch", "learning_rate", "weight_cycle", "weight_hr",
        "weight_adversarial", "weight_feature", "weight_contrastive", "temperature",
        "nce_locations", "hr_detail")

    #: feature channels of the encoder and decoder, residual blocks in each
    channels: int = 16
    #: residual blocks in the encoder and in the decoder
    blocks: int = 2
    #: HR patch side in pixels (a multiple of the slice-thickness factor); LR patches are
    #: patch / factor rows by patch columns
    patch: int = 40
    #: patches per training step
    batch: int = 8
    #: training steps
    steps: int = 1000
    #: Adam's learning rate
    learning_rate: float = 1e-3
    #: loss weights: cycle through the acquisition model (D(G(y)) vs y), the HR domain's own
    #: simulated acquisition (G(D(x)) vs x), adversarial on images and on features, InfoNCE
    weight_cycle: float = 10.0
    #: weight of the HR domain's own simulated acquisition (G(D(x)) vs x)
    weight_hr: float = 10.0
    #: weight of the adversarial loss on images
    weight_adversarial: float = 0.1
    #: weight of the adversarial loss on features
    weight_feature: float = 0.1
    #: weight of the InfoNCE loss
    weight_contrastive: float = 1.0
    #: InfoNCE temperature and the number of feature locations per patch (positives: the same
    #: location, negatives: the other locations of that patch)
    temperature: float = 0.07
    #: feature locations per patch in the InfoNCE loss
    nce_locations: int = 64
    #: planes of the HR domain need this detail along both axes, relative to the image's best
    #: axis (metrics.detail_ratio; below: interpolated, not HR)
    hr_detail: float = 0.85
    # set from [execution] (random_seed, device, omp_nthreads), one for every method
    #: random seed of the training
    seed: int = 0
    #: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda`` or ``mps``
    device: str = "auto"
    #: torch threads (unset: all cores)
    threads: int | None = None
    #: training state saved to the work folder every this many steps (resumable)
    checkpoint_every: int = 100
    #: steps between two progress lines in the log
    log_every: int = 50

    def validate(self) -> None:
        """ValueError naming the setting that is out of range."""
        if self.device not in DEVICES:
            raise ValueError(f"[unpaired] device must be one of {', '.join(DEVICES)}")
        for name in ("channels", "blocks", "patch", "batch", "steps", "nce_locations",
                     "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"[unpaired] {name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("learning_rate", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"[unpaired] {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_cycle", "weight_hr", "weight_adversarial", "weight_feature",
                     "weight_contrastive"):
            if getattr(self, name) < 0:
                raise ValueError(f"[unpaired] {name} must be >= 0, got {getattr(self, name)!r}")



#: --sloppy: a run of seconds, for testing the pipeline
SLOPPY_UNPAIRED = {"steps": 20, "channels": 8, "blocks": 1, "batch": 2, "patch": 16,
                   "checkpoint_every": 10, "log_every": 5}

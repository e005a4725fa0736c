"""The ``[jtv]`` settings table: :class:`JTVSettings` (torch-free, so that the settings load
without the solver)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mcinr_bids.core.settings import PROFILE_MOVED, SettingsTable


@dataclass
class JTVSettings(SettingsTable):
    """Settings of :func:`reconstruct_jtv` (intensities normalised to about [0, 1]); the
    ``[jtv]`` table of a settings file."""

    TABLE: ClassVar[str] = "jtv"
    MOVED: ClassVar[dict[str, str]] = {"profile": PROFILE_MOVED}
    #: the optimiser's numbers
    ADVANCED: ClassVar[tuple[str, ...]] = ("step_size", "epsilon")

    #: weight of the JTV prior against the noise-weighted data terms
    regularisation: float = 1.0
    #: Adam iterations from the cubic interpolation
    iterations: int = 150
    #: Adam step size on intensities normalised to about [0, 1]
    step_size: float = 0.01
    #: smoothing of the JTV norm where every gradient is 0
    epsilon: float = 1e-3

    def validate(self) -> None:
        """ValueError naming the setting that is out of range."""
        for name in ("regularisation", "step_size", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"[jtv] {name} must be > 0, got {getattr(self, name)!r}")
        if int(self.iterations) < 1:
            raise ValueError(f"[jtv] iterations must be >= 1, got {self.iterations!r}")

"""The ``[jtv]`` settings table: :class:`JTVSettings` (torch-free, so that the settings load
without the solver)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mcinr_bids.core.settings import SettingsTable
from mcinr_bids.core.slices import SLICE_PROFILES as PROFILES


@dataclass
class JTVSettings(SettingsTable):
    """Settings of :func:`reconstruct_jtv` (intensities normalised to about [0, 1]); the
    ``[jtv]`` table of a settings file."""

    TABLE: ClassVar[str] = "jtv"

    #: weight of the JTV prior against the noise-weighted data terms
    regularisation: float = 1.0
    #: Adam iterations from the cubic interpolation
    iterations: int = 150
    #: Adam step size on intensities normalised to about [0, 1]
    step_size: float = 0.01
    #: slice profile of an acquired voxel: ``box`` (thick 2D slices), ``point`` (decimation)
    profile: str = "box"
    #: smoothing of the JTV norm where every gradient is 0
    epsilon: float = 1e-3

    def validate(self) -> None:
        """ValueError naming the setting that is out of range."""
        if self.profile not in PROFILES:
            raise ValueError(f"[jtv] profile must be one of {', '.join(PROFILES)}, got "
                             f"{self.profile!r}")
        for name in ("regularisation", "step_size", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"[jtv] {name} must be > 0, got {getattr(self, name)!r}")
        if int(self.iterations) < 1:
            raise ValueError(f"[jtv] iterations must be >= 1, got {self.iterations!r}")

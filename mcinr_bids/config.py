"""One configuration object for mcinr-bids, serialisable to TOML.

The INR settings (:class:`INRSettings`) are what the science core needs; presets are named
sets of overrides.  ``fast`` is the default, chosen by measurement (``benchmarks/RESULTS.md``);
``paper`` is Table 3 of McGinnis, Shit et al. (MICCAI 2023) exactly.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ENCODINGS = ("fourier", "grid")
MODELS = ("split", "vanilla", "single")


@dataclass
class INRSettings:
    """Every parameter of one INR fit.

    Lengths are in millimetres of scanner (world) space; intensities are in the units of each input
    image after a robust per-image normalisation (see ``intensity_percentiles``).
    """

    # Representation
    encoding: str = "grid"
    fourier_features: int = 256
    fourier_scale: float = 4.0
    grid_cell_sizes_mm: list[float] = field(
        default_factory=lambda: [16.0, 11.3, 8.0, 5.7, 4.0, 2.8, 2.0, 1.4, 1.0])
    grid_features: int = 2
    hash_table_log2: int = 24
    image_grid_scales: list[float] = field(default_factory=list)
    plane_cell_sizes_mm: list[float] = field(default_factory=list)
    plane_features: int = 8
    smoothness: float = 0.0
    smoothness_distance_mm: float = 1.0
    feature_decay: float = 0.0
    feature_diffusion: float = 20.0
    diffusion_every: int = 8
    trunk_layers: int = 2
    trunk_width: int = 64
    head_layers: int = 1
    head_width: int = 64
    model: str = "split"
    # Optimisation
    batch_size: int = 32768
    min_steps_per_epoch: int = 32
    learning_rate: float = 5e-3
    epochs: int = 40
    time_limit_seconds: float | None = None
    image_weights: list[float] | None = None
    # Slice profile (point spread function) model
    psf: bool = False
    psf_samples: int = 8
    # Early stopping on mutual information between predicted contrasts
    early_stopping: bool = True
    mi_bins: int = 32
    mi_points: int = 65536
    mi_window: int = 4
    mi_tolerance: float = 0.005
    min_epochs: int = 5
    # Data
    intensity_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    foreground_dilation_mm: float = 2.0
    # Execution
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    prediction_chunk: int = 262144

    def validate(self) -> None:
        """Raise ValueError on settings that cannot work."""
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.encoding == "grid" and not (self.grid_cell_sizes_mm or self.plane_cell_sizes_mm):
            raise ValueError("the grid encoding needs grid_cell_sizes_mm or plane_cell_sizes_mm")
        for name in ("batch_size", "epochs", "mi_bins", "mi_points", "psf_samples",
                     "diffusion_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if self.feature_diffusion < 0 or self.feature_decay < 0:
            raise ValueError("feature_diffusion and feature_decay must be >= 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> INRSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown INR settings: {', '.join(unknown)}")
        return cls(**values)


PRESETS: dict[str, dict] = {
    # Chosen by measurement on 2 CPU cores (benchmarks/RESULTS.md).
    "fast": {},
    # Table 3 of the paper: 512 Fourier features (B: 256x3 ~ N(0, 4^2)), 5 x 1024 ReLU trunk,
    # two-layer 512-wide heads, batch 1000, Adam 4e-4 with cosine annealing, 50 epochs.
    "paper": {
        "encoding": "fourier",
        "fourier_features": 256,
        "fourier_scale": 4.0,
        "trunk_layers": 5,
        "trunk_width": 1024,
        "head_layers": 2,
        "head_width": 512,
        "batch_size": 1000,
        "min_steps_per_epoch": 0,
        "feature_decay": 0.0,
        "feature_diffusion": 0.0,
        "learning_rate": 4e-4,
        "epochs": 50,
    },
}


def settings_for_preset(preset: str = "fast", **overrides) -> INRSettings:
    """Return the settings of a named preset with explicit overrides applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = INRSettings().to_dict()
    values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = INRSettings.from_dict(values)
    settings.validate()
    return settings


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(sections: dict[str, dict]) -> str:
    """Write ``{section: {key: value}}`` as TOML (``None`` values are left out)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def save_settings(settings: INRSettings, path: str | Path) -> None:
    Path(path).write_text(to_toml({"inr": settings.to_dict()}))


def load_settings(path: str | Path) -> INRSettings:
    with open(path, "rb") as handle:
        values = tomllib.load(handle).get("inr", {})
    settings = INRSettings().to_dict()
    settings.update(values)
    result = INRSettings.from_dict(settings)
    result.validate()
    return result


OUTPUT_SPACES = ("MNI152NLin2009cAsym", "SRI24", "native")
SKULL_STRIP = ("auto", "force", "skip")
DEFAULT_CONTRASTS = ("T1w", "T2w", "FLAIR", "PDw")

#: INR overrides for ``--sloppy``: a tiny, quick fit for testing a pipeline, not for results
SLOPPY_INR = {"epochs": 3, "min_epochs": 1, "grid_cell_sizes_mm": [16.0, 8.0, 4.0],
              "mi_points": 4096, "batch_size": 8192, "min_steps_per_epoch": 8}


@dataclass
class ExecutionSettings:
    """Where the data are and how the workflow runs (fMRIPrep's ``execution`` + ``nipype``)."""

    bids_dir: str = ""
    output_dir: str = ""
    analysis_level: str = "participant"
    work_dir: str = "work"
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    bids_filter_file: str | None = None
    bids_database_dir: str | None = None
    skip_bids_validation: bool = False
    clean_workdir: bool = False
    stop_on_first_crash: bool = False
    nprocs: int | None = None
    omp_nthreads: int | None = None
    mem_gb: float | None = None
    n_gpu_procs: int = 1
    verbose: int = 0
    sloppy: bool = False
    random_seed: int = 0
    run_uuid: str = ""


@dataclass
class WorkflowSettings:
    """What the participant workflow does."""

    contrasts: list[str] = field(default_factory=lambda: list(DEFAULT_CONTRASTS))
    output_space: str = "MNI152NLin2009cAsym"
    output_resolution: float = 1.0
    skull_strip: str = "auto"
    preset: str = "fast"
    model: str = "split"
    psf: bool = False
    device: str = "auto"
    bias_correction: bool = True
    # evaluation mode: simulate anisotropic acquisitions from isotropic inputs
    simulate_lowres: list[str] = field(default_factory=list)
    simulate_factor: int = 4
    simulate_protocol: str = "decimate"
    evaluate_ablation: bool = False


@dataclass
class AppConfig:
    """The one configuration of a ``mcinr-bids`` run, written to TOML per run."""

    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    workflow: WorkflowSettings = field(default_factory=WorkflowSettings)
    inr: INRSettings = field(default_factory=INRSettings)

    def to_toml(self) -> str:
        return to_toml({"execution": dataclasses.asdict(self.execution),
                        "workflow": dataclasses.asdict(self.workflow),
                        "inr": self.inr.to_dict()})

    def save(self, path: str | Path) -> Path:
        """Write the TOML atomically (a temporary file renamed onto ``path``)."""
        import os
        import tempfile

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".toml", dir=path.parent)
        with os.fdopen(handle, "w") as stream:
            stream.write(self.to_toml())
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> AppConfig:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
        return cls.from_sections(values)

    @classmethod
    def from_sections(cls, values: dict) -> AppConfig:
        """Build from ``{"execution": ..., "workflow": ..., "inr": ...}`` (each optional)."""
        config = cls()
        for name, section in (("execution", ExecutionSettings), ("workflow", WorkflowSettings)):
            given = values.get(name, {})
            known = {f.name for f in dataclasses.fields(section)}
            unknown = sorted(set(given) - known)
            if unknown:
                raise ValueError(f"unknown [{name}] settings: {', '.join(unknown)}")
            setattr(config, name, section(**{**dataclasses.asdict(getattr(config, name)),
                                             **given}))
        inr = INRSettings().to_dict()
        inr.update(values.get("inr", {}))
        config.inr = INRSettings.from_dict(inr)
        config.inr.validate()
        return config

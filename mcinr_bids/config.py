"""One configuration of a run, composed of the settings dataclasses; TOML in and out.

``[execution]`` (:class:`ExecutionSettings`: where the data are, how the workflow runs),
``[workflow]`` (:class:`WorkflowSettings`: what the participant workflow does), ``[inr]``
(:class:`~mcinr_bids.methods.inr.settings.INRSettings`, the engine's own settings), ``[jtv]``
(:class:`~mcinr_bids.methods.jtv.JTVSettings`, the joint-total-variation method's) and
``[unpaired]``
(:class:`~mcinr_bids.methods.unpaired.settings.UnpairedSettings`, the cohort method's training).
Every setting lives in exactly one of them: the device, the thread count and the random seed
are ``[execution]``'s, handed to every method (:func:`share_execution`); each method's research
knobs sit in its ``advanced`` sub-table (``[inr.advanced]``).  :func:`resolve_config` is the
one precedence rule, used by every command line and by the workflow: defaults, then the preset
(``[workflow] preset``), then ``--sloppy``, then the tables of a ``--config-file``, then the
options given on the command line.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mcinr_bids.core.settings import (
    DEVICES,
    SHARED_EXECUTION,
    SettingsTable,
    check_not_shared,
    range_problem,
)
from mcinr_bids.methods.inr.settings import PRESETS, INRSettings
from mcinr_bids.methods.jtv import JTVSettings
from mcinr_bids.methods.unpaired.settings import SLOPPY_UNPAIRED, UnpairedSettings
from mcinr_bids.quality.simulation import PROTOCOLS


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
    """Write ``{section: {key: value}}`` as TOML (``None`` values are left out; a dict value
    is the sub-table ``[section.key]``)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None and not isinstance(value, dict):
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        tables = {f"{section}.{key}": value for key, value in values.items()
                  if isinstance(value, dict)}
        if tables:
            lines.append(to_toml(tables))
    return "\n".join(lines)


OUTPUT_SPACES = ("MNI152NLin2009cAsym", "SRI24", "native")
SKULL_STRIP = ("auto", "force", "skip")
#: how each image is aligned to the reference: ``rigid`` (ANTs, mutual information) or
#: ``header`` (the scanner coordinates as they are: images already co-registered)
REGISTRATIONS = ("rigid", "header")
DEFAULT_CONTRASTS = ("T1w", "T2w", "FLAIR", "PDw")
#: the reconstruction methods of the participant level: the subject's INR (McGinnis, Shit et
#: al.), the classical joint-total-variation reconstruction (UniRes' method) or the
#: cohort-trained unpaired contrastive network (Li et al.; trained by the group level)
METHODS = ("inr", "jtv", "unpaired")
#: the ``desc-`` label of each method's outputs
OUTPUT_DESC = {"inr": "superres", "jtv": "jtv", "unpaired": "unpaired"}
#: the table names of a settings file, and the settings class of each
TABLES = ("execution", "workflow", "inr", "jtv", "unpaired")

#: INR overrides for ``--sloppy``: a tiny, quick fit for testing a pipeline, not for results
SLOPPY_INR = {"epochs": 3, "min_epochs": 1, "grid_cell_sizes_mm": [16.0, 8.0, 4.0],
              "mi_points": 4096, "batch_size": 8192, "min_steps_per_epoch": 8}
#: JTV overrides for ``--sloppy``
SLOPPY_JTV = {"iterations": 10}


@dataclass
class ExecutionSettings(SettingsTable):
    """Where the data are and how the workflow runs (fMRIPrep's ``execution`` + ``nipype``)."""

    TABLE: ClassVar[str] = "execution"

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
    #: where the INR and the unpaired method run (JTV and the registrations run on the CPU):
    #: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda`` or ``mps``
    device: str = "auto"
    #: seed of every method's randomness (the INR's model, sampling and networks, the unpaired
    #: training) and of the registrations
    random_seed: int = 0
    #: how much the log says: 0, or the count of ``-v`` (1 also lists the time of every step at the
    #: end, slowest first; 2 and more: debug)
    verbose: int = 0
    sloppy: bool = False

    @classmethod
    def from_dict(cls, values: dict):
        # configurations saved before 2026-12-06 kept the run's identifier here; each run now
        # names itself (AppConfig.run_uuid)
        return super().from_dict({k: v for k, v in values.items() if k != "run_uuid"})

    def validate(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; choose from "
                             f"{', '.join(DEVICES)}")
        for key in ("nprocs", "omp_nthreads", "mem_gb", "random_seed"):  # as from a file
            problem = range_problem(key, getattr(self, key))
            if problem:
                raise ValueError(f"{key} {problem}, got {getattr(self, key)}")


@dataclass
class WorkflowSettings(SettingsTable):
    """What the participant workflow does."""

    TABLE: ClassVar[str] = "workflow"

    contrasts: list[str] = field(default_factory=lambda: list(DEFAULT_CONTRASTS))
    #: ``inr`` (outputs ``desc-superres``) or ``jtv`` (outputs ``desc-jtv``)
    method: str = "inr"
    output_space: str = "MNI152NLin2009cAsym"
    output_resolution: float = 1.0
    skull_strip: str = "auto"
    registration: str = "rigid"
    #: named INR settings that the [inr] table and the command line start from
    preset: str = "fast"
    #: N4 bias-field correction (ANTs) of every image before registration and the fit; false uses
    #: the images as they are
    bias_correction: bool = True
    # evaluation mode: simulate anisotropic acquisitions from isotropic inputs
    simulate_lowres: list[str] = field(default_factory=list)
    simulate_factor: int = 4
    simulate_protocol: str = "decimate"
    evaluate_ablation: bool = False
    #: evaluation mode: a BIDS-derivatives folder of lesion masks (scores inside the lesion)
    lesion_masks: str | None = None
    #: ground-truth-free check: every K-th acquired slice of each image left out of a second
    #: reconstruction and scored (0: off; inr and jtv methods)
    qc_holdout: int = 0
    # the unpaired (cohort) method
    #: group level: train one unpaired model per contrast on the selected participants
    train_unpaired: bool = False
    #: folder of the trained models (default: <output_dir>/models, where the group level
    #: writes them)
    unpaired_models: str | None = None


@dataclass
class AppConfig:
    """The one configuration of a ``mcinr-bids`` run, written to TOML per run."""

    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    workflow: WorkflowSettings = field(default_factory=WorkflowSettings)
    inr: INRSettings = field(default_factory=INRSettings)
    jtv: JTVSettings = field(default_factory=JTVSettings)
    unpaired: UnpairedSettings = field(default_factory=UnpairedSettings)
    #: this run's identifier (date, time and a random suffix), set by the run itself and never
    #: read from a settings file; its log folder ``sub-X/log/<run_uuid>`` is named after it
    run_uuid: str = ""

    def to_toml(self) -> str:
        header = f"# mcinr-bids run {self.run_uuid}\n" if self.run_uuid else ""
        return header + to_toml({"execution": self.execution.to_table(),
                                 "workflow": self.workflow.to_table(),
                                 "inr": self.inr.to_table(), "jtv": self.jtv.to_table(),
                                 "unpaired": self.unpaired.to_table()})

    def save(self, path: str | Path) -> Path:
        """Write the TOML atomically (a temporary file renamed onto ``path``)."""
        from mcinr_bids.core.io import write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.to_toml(), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> AppConfig:
        """The configuration a TOML file describes (see :func:`resolve_config`)."""
        return resolve_config(read_config_file(path))


def read_config_file(path: str | Path) -> dict[str, dict]:
    """The tables of a TOML settings file, each flat (its ``advanced`` sub-table merged);
    ValueError naming the file when it is unreadable, has tables other than those of
    :data:`TABLES`, keys that are unknown or in the wrong table, or values that do not fit."""
    try:
        with open(path, "rb") as handle:
            tables = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: not a readable TOML settings file ({error}); write "
                         f"{_table_names()} tables (mcinr-bids writes one per run as "
                         "sub-X/log/<run>/mcinr.toml).") from error
    known = {"execution": ExecutionSettings, "workflow": WorkflowSettings, "inr": INRSettings,
             "jtv": JTVSettings, "unpaired": UnpairedSettings}
    for name, values in tables.items():
        if name not in known or not isinstance(values, dict):
            raise ValueError(f"{path}: unknown table [{name}]; the tables are "
                             f"{_table_names()}.")
        try:
            values = tables[name] = known[name].from_table(values)
            known[name].from_dict(values)  # unknown keys
        except ValueError as error:
            raise ValueError(f"{path}: {error}.") from error
        problems = known[name].value_problems(values)
        if problems:
            raise ValueError(f"{path}: {problems[0]}.")
    return tables


def resolve_config_file(path: str | Path | None, given: dict[str, dict] | None = None,
                        tables: tuple[str, ...] = TABLES) -> AppConfig:
    """:func:`resolve_config` of the settings file ``path`` (None: none; only its ``tables``)
    and the options ``given``; a value the file alone makes invalid is reported with the
    file's path, as :func:`read_config_file` reports the file's unknown keys."""
    file_tables = read_config_file(path) if path else {}
    file_tables = {name: values for name, values in file_tables.items() if name in tables}
    try:
        return resolve_config(file_tables, given)
    except ValueError as error:
        if path and file_tables:
            try:
                resolve_config(file_tables)
            except ValueError as alone:
                if str(alone) == str(error):
                    raise ValueError(f"{path}: {error}") from error
        raise


def _table_names() -> str:
    names = [f"[{name}]" for name in TABLES]
    return ", ".join(names[:-1]) + " and " + names[-1]


def resolve_config(file_tables: dict[str, dict] | None = None,
                   given: dict[str, dict] | None = None) -> AppConfig:
    """The one precedence rule of every command line and the workflow.

    Each setting is, from weakest to strongest: its dataclass default; for ``[inr]``, the
    preset's value (``[workflow] preset``, itself resolved by this rule) and then ``--sloppy``'s;
    the value in ``file_tables`` (a ``--config-file``, :func:`read_config_file`); the value in
    ``given`` (``{"execution": {...}, "workflow": {...}, "inr": {...}}``: only the options the
    user actually typed, whatever their value, e.g. an explicit ``--model split`` beats a file's
    ``model = "single"``).
    """
    file_tables = file_tables or {}
    given = given or {}

    def layered(name: str) -> dict:
        values = {**file_tables.get(name, {}), **given.get(name, {})}
        if name != "execution":
            check_not_shared(name, values)
        return values

    execution = ExecutionSettings.from_dict(layered("execution"))
    workflow = WorkflowSettings(**layered("workflow"))
    if workflow.preset not in PRESETS:
        raise ValueError(f"unknown preset {workflow.preset!r}; choose from "
                         f"{', '.join(PRESETS)}")
    inr = {**INRSettings().to_dict(), **PRESETS[workflow.preset]}
    if execution.sloppy:
        inr.update(SLOPPY_INR)
    inr.update(layered("inr"))
    for name, choices in (("method", METHODS), ("registration", REGISTRATIONS),
                          ("skull_strip", SKULL_STRIP), ("simulate_protocol", PROTOCOLS)):
        if getattr(workflow, name) not in choices:  # a config file's typo must not pass
            raise ValueError(f"unknown {name} {getattr(workflow, name)!r}; choose from "
                             f"{', '.join(choices)}")
    if workflow.qc_holdout and (workflow.qc_holdout < 2 or workflow.method == "unpaired"):
        raise ValueError(f"[workflow] qc_holdout must be 0 (off) or >= 2 with the inr or jtv "
                         f"method, got {workflow.qc_holdout} with {workflow.method}")
    jtv = {**(SLOPPY_JTV if execution.sloppy else {}), **layered("jtv")}
    unpaired = {**(SLOPPY_UNPAIRED if execution.sloppy else {}), **layered("unpaired")}
    config = AppConfig(execution=execution, workflow=workflow, inr=INRSettings.from_dict(inr),
                       jtv=JTVSettings.from_dict(jtv),
                       unpaired=UnpairedSettings.from_dict(unpaired))
    share_execution(config)
    config.execution.validate()
    config.inr.validate()
    config.jtv.validate()
    config.unpaired.validate()
    return config


def share_execution(config: AppConfig) -> AppConfig:
    """Give every method ``[execution]``'s device, thread count and random seed
    (:data:`~mcinr_bids.core.settings.SHARED_EXECUTION`); call again after changing them."""
    for table in (config.inr, config.unpaired):
        for key in table.SHARED:
            setattr(table, key, getattr(config.execution, SHARED_EXECUTION[key]))
    return config

"""``mcinr-bids``: the BIDS App entry point (participant and group levels)."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..config import SLOPPY_INR, AppConfig, settings_for_preset
from .parser import build_parser

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """Bad arguments or input data, reported as one message with exit code 2."""


def build_config(args) -> AppConfig:
    """One AppConfig from the config file (if any) overridden by the command line."""
    parser = build_parser()
    defaults = vars(parser.parse_args([str(args.bids_dir), str(args.output_dir),
                                       args.analysis_level]))
    given = {k: v for k, v in vars(args).items() if v != defaults.get(k)}
    config = AppConfig.load(args.config_file) if args.config_file else AppConfig()
    execution, workflow = config.execution, config.workflow
    execution.bids_dir = str(Path(args.bids_dir).absolute())
    execution.output_dir = str(Path(args.output_dir).absolute())
    execution.analysis_level = args.analysis_level
    if "work_dir" in given or not args.config_file:
        execution.work_dir = str(Path(args.work_dir).absolute())
    for key in ("bids_filter_file", "bids_database_dir"):
        if key in given:
            setattr(execution, key, str(Path(getattr(args, key)).absolute()))
    for key in ("participant_label", "session_label", "skip_bids_validation", "clean_workdir",
                "stop_on_first_crash", "nprocs", "omp_nthreads", "mem_gb", "n_gpu_procs",
                "sloppy", "random_seed"):
        if key in given:
            setattr(execution, key, getattr(args, key))
    if "verbose_count" in given:
        execution.verbose = args.verbose_count
    for key in ("contrasts", "output_space", "output_resolution", "skull_strip", "preset",
                "model", "psf", "device", "simulate_lowres", "simulate_factor",
                "simulate_protocol", "evaluate_ablation"):
        if key in given:
            setattr(workflow, key, getattr(args, key))
    from ..utils.bids import clean_labels

    execution.participant_label = clean_labels(execution.participant_label, "sub-")
    execution.session_label = clean_labels(execution.session_label, "ses-")
    execution.nprocs = execution.nprocs or os.cpu_count() or 1
    execution.omp_nthreads = min(execution.omp_nthreads or execution.nprocs, execution.nprocs)
    execution.run_uuid = execution.run_uuid or (
        datetime.now(UTC).strftime("%Y%m%d-%H%M%S_") + uuid.uuid4().hex[:8])

    # INR settings: the preset, then the [inr] table of the config file, then the CLI
    inr = settings_for_preset(workflow.preset).to_dict()
    if args.config_file:
        import tomllib

        with open(args.config_file, "rb") as handle:
            inr.update(tomllib.load(handle).get("inr", {}))
    inr.update(model=workflow.model, psf=workflow.psf or inr.get("psf", False),
               device=workflow.device, seed=execution.random_seed)
    if execution.sloppy:
        inr.update(SLOPPY_INR)
    config.inr = settings_for_preset("fast", **inr)
    return config


def _setup_logging(verbose: int) -> logging.Logger:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logger = logging.getLogger("mcinr-bids")
    logger.setLevel(logging.INFO)
    from nipype import logging as nipype_logging

    nipype_logging.getLogger("nipype.workflow").setLevel(max(level, logging.INFO))
    nipype_logging.getLogger("nipype.interface").setLevel(level)
    return logger


def _load_filters(path: str | None) -> dict:
    if not path:
        return {}
    try:
        with open(path) as handle:
            filters = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"{path}: not a readable JSON filter file ({error}); write e.g. "
                         '{"T1w": {"acquisition": "axial"}}.') from error
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise UsageError(f"{path}: the filter file must map a contrast (T1w, FLAIR, ...) to a "
                         "dictionary of pybids entities.")
    return filters


def run_participant(config: AppConfig, logger: logging.Logger) -> int:
    from bids import BIDSLayout
    from nipype import config as nipype_config

    from ..utils.bids import (
        BIDSError,
        collect_inputs,
        parse_simulation_specs,
        run_bids_validator,
        write_derivative_metadata,
        write_simulated_dataset,
    )
    from ..utils.templates import TemplateError, resolve_output_space
    from ..workflows.base import init_mcinr_wf

    execution, workflow = config.execution, config.workflow
    if not execution.skip_bids_validation:
        errors = run_bids_validator(execution.bids_dir)
        if errors:
            raise BIDSError(f"{execution.bids_dir}: bids-validator-deno found "
                            f"{len(errors)} error(s):\n  " + "\n  ".join(errors)
                            + "\nFix them, or pass --skip-bids-validation to go on anyway.")
    filters = _load_filters(execution.bids_filter_file)
    layout = BIDSLayout(execution.bids_dir, validate=False,
                        database_path=execution.bids_database_dir,
                        reset_database=False)
    available = layout.get_subjects()
    subjects = execution.participant_label or available
    unknown = sorted(set(subjects) - set(available))
    if unknown:
        raise UsageError(f"{execution.bids_dir}: no participant(s) {', '.join(unknown)} in this "
                         f"dataset (it has: {', '.join(available) or 'none'}); check "
                         "--participant-label.")
    work_dir = Path(execution.work_dir)
    if execution.clean_workdir and work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    contrasts = workflow.contrasts
    if workflow.simulate_lowres:
        axes = parse_simulation_specs(workflow.simulate_lowres)
        contrasts = list(axes)
    groups = collect_inputs(layout, subjects, execution.session_label, contrasts, filters)
    originals: dict[str, str] = {}
    if workflow.simulate_lowres:
        # evaluation mode: the pipeline runs on simulated thick-slice copies; N4 is skipped so
        # that the scores measure super-resolution alone against the untouched originals
        groups, originals = write_simulated_dataset(
            groups, execution.bids_dir, str(Path(execution.work_dir) / "simulated_bids"), axes,
            workflow.simulate_protocol, workflow.simulate_factor)
        workflow.bias_correction = False
    needed = 1 if workflow.model == "single" else 2
    runnable, skipped = [], []
    for group in groups:
        if len(group.images) < needed:
            skipped.append(group)
            logger.error("%s: skipped: %d image(s) of %s found, --model %s needs at least %d; "
                         "add images or use --model single.", group.label, len(group.images),
                         "/".join(workflow.contrasts), workflow.model, needed)
        else:
            runnable.append(group)
    if not runnable:
        logger.error("no subject has enough images; nothing to do.")
        return EXIT_FAILED

    try:
        space = resolve_output_space(workflow.output_space, str(work_dir / "templates"))
    except TemplateError as error:
        raise UsageError(str(error)) from error
    if workflow.output_space == "MNI152NLin2009cAsym" and space.name != workflow.output_space:
        logger.warning("TemplateFlow has no local MNI152NLin2009cAsym in TEMPLATEFLOW_HOME; "
                       "using nilearn's %s template instead (outputs are named space-%s).",
                       space.name, space.name)

    write_derivative_metadata(execution.output_dir, execution.bids_dir)
    config.save(work_dir / f"config-{execution.run_uuid}.toml")
    for group in runnable:
        config.save(Path(execution.output_dir) / f"sub-{group.subject}" / "log"
                    / execution.run_uuid / "mcinr.toml")

    nipype_config.update_config({
        "execution": {"crashfile_format": "txt", "stop_on_first_crash":
                      execution.stop_on_first_crash, "remove_unnecessary_outputs": False,
                      "check_version": False, "get_linked_libs": False,
                      # the scheduler looks for finished nodes every 0.5 s, not nipype's 2 s:
                      # each step of a subject's chain of ~15 nodes waited up to 2 s for it
                      "poll_sleep_duration": 0.5},
        "monitoring": {"enabled": False}})
    source_dir = str(work_dir / "simulated_bids") if originals else execution.bids_dir
    wf = init_mcinr_wf(config, runnable, space, originals=originals, source_dir=source_dir)
    # forkserver: workers start from a clean process, never forked from one whose torch/OpenMP
    # thread pools are already running (a forked child can deadlock on their locks)
    plugin_args = {"n_procs": execution.nprocs, "raise_insufficient": False,
                   "mp_context": "forkserver", "n_gpu_procs": execution.n_gpu_procs}
    if execution.mem_gb:
        plugin_args["memory_gb"] = execution.mem_gb
    failed = False
    # nipype's scheduler runs a full garbage collection before each submission and after each
    # node it runs in this process (about 50 per subject); with torch, pybids and the workflow
    # loaded each took 0.2 s, during which nothing is submitted.  What is alive now stays alive
    # for the run: freeze it out of those collections.
    gc.collect()
    gc.freeze()
    try:
        wf.run(plugin="MultiProc", plugin_args=plugin_args)
    except RuntimeError as error:
        failed = True
        logger.error("the workflow failed: %s; crash files are in %s/sub-*/log/%s/",
                     error, execution.output_dir, execution.run_uuid)
    finally:
        gc.unfreeze()
    from ..reports.participant import assemble_report

    for subject in sorted({group.subject for group in runnable}):
        # assembled here, after all sessions ran: no two jobs write one page
        report = assemble_report(execution.output_dir, subject)
        logger.info("report: %s", report)
    if failed:
        return EXIT_FAILED
    for group in runnable:
        logger.info("%s: done", group.label)
    if skipped:
        logger.error("%d subject/session(s) skipped: %s", len(skipped),
                     ", ".join(g.label for g in skipped))
        return EXIT_FAILED
    return EXIT_OK


def run_group(config: AppConfig, logger: logging.Logger) -> int:
    from ..reports.group import aggregate_metrics

    table = aggregate_metrics(config.execution.output_dir, config.execution.participant_label)
    print(f"group metrics: {table}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no network check for nipype updates
    args = build_parser().parse_args(argv)
    from ..utils.bids import BIDSError, check_folders

    try:
        config = build_config(args)
        logger = _setup_logging(config.execution.verbose)
        if config.execution.analysis_level == "group":
            # the group level reads the derivatives only: the raw data may be gone
            return run_group(config, logger)
        check_folders(config.execution.bids_dir, config.execution.output_dir)
        return run_participant(config, logger)
    except (UsageError, BIDSError, ValueError) as error:
        print(f"mcinr-bids: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

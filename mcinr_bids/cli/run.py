"""``mcinr-bids``: the BIDS App entry point (participant and group levels)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from mcinr_bids.cli.inputs import UsageError, earlier_outputs, load_filters, split_by_image_content
from mcinr_bids.cli.options import OptionMap, absolute, describe_os_error, given_options, to_tables
from mcinr_bids.cli.parser import build_parser
from mcinr_bids.config import AppConfig, resolve_config_file, share_execution

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


#: where each option of the mcinr-bids command line goes (the one home of every setting)
APP_OPTIONS: OptionMap = {
    "bids_dir": ("execution", "bids_dir", absolute),
    "output_dir": ("execution", "output_dir", absolute),
    "analysis_level": ("execution", "analysis_level"),
    "work_dir": ("execution", "work_dir", absolute),
    "bids_filter_file": ("execution", "bids_filter_file", absolute),
    "bids_database_dir": ("execution", "bids_database_dir", absolute),
    **{key: ("execution", key) for key in (
        "participant_label", "session_label", "skip_bids_validation", "clean_workdir",
        "stop_on_first_crash", "nprocs", "omp_nthreads", "mem_gb", "n_gpu_procs", "sloppy")},
    "verbose_count": ("execution", "verbose"),
    **{key: ("workflow", key) for key in (
        "contrasts", "method", "output_space", "output_resolution", "skull_strip",
        "registration", "preset",
        "simulate_lowres", "simulate_factor", "simulate_protocol", "evaluate_ablation",
        "train_unpaired", "qc_holdout")},
    "unpaired_models": ("workflow", "unpaired_models", absolute),
    "lesion_masks": ("workflow", "lesion_masks", absolute),
    "model": ("inr", "model"),
    "psf": ("inr", "psf"),
    "device": ("execution", "device"),
    "random_seed": ("execution", "random_seed"),
}


def build_config(argv: list[str] | None) -> AppConfig:
    """One AppConfig: defaults, preset, the config file (if any), then the options given."""
    given = given_options(build_parser, argv)
    config = resolve_config_file(given.get("config_file"), to_tables(given, APP_OPTIONS))
    execution = config.execution
    from mcinr_bids.pipeline.bids import clean_labels

    execution.work_dir = absolute(execution.work_dir)
    execution.participant_label = clean_labels(execution.participant_label, "sub-")
    execution.session_label = clean_labels(execution.session_label, "ses-")
    execution.nprocs = execution.nprocs or os.cpu_count() or 1
    execution.omp_nthreads = min(execution.omp_nthreads or execution.nprocs, execution.nprocs)
    share_execution(config)  # every method's threads: the workflow's per-process count
    config.run_uuid = (  # new for every run, also when a saved config is read back
        datetime.now(UTC).strftime("%Y%m%d-%H%M%S_") + uuid.uuid4().hex[:8])
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


def select_inputs(config: AppConfig, logger: logging.Logger) -> tuple[list, list, dict]:
    """Validate the dataset, select every subject/session's images and keep those that can run.

    Returns ``(runnable, skipped, originals)``; in the evaluation mode the runnable groups point
    at simulated thick-slice copies and ``originals`` maps each copy to its isotropic original.
    """
    from bids import BIDSLayout

    from mcinr_bids.core.io import STAGING_PREFIX, TEMPORARY_PREFIX, remove_stale_temporaries
    from mcinr_bids.pipeline.bids import (
        BIDSError,
        collect_inputs,
        parse_simulation_specs,
        prepare_work_dir,
        run_bids_validator,
        write_simulated_dataset,
    )

    execution, workflow = config.execution, config.workflow
    if not execution.skip_bids_validation:
        errors = run_bids_validator(execution.bids_dir)
        if errors:
            raise BIDSError(f"{execution.bids_dir}: bids-validator-deno found "
                            f"{len(errors)} error(s):\n  " + "\n  ".join(errors)
                            + "\nFix them, or pass --skip-bids-validation to go on anyway.")
    filters = load_filters(execution.bids_filter_file)
    axes = parse_simulation_specs(workflow.simulate_lowres) if workflow.simulate_lowres else {}
    contrasts = list(axes) or workflow.contrasts
    stray = sorted(set(filters) - set(contrasts))
    if stray:  # a filter for a contrast that is not selected would be ignored in silence
        raise UsageError(f"{execution.bids_filter_file}: filters for {', '.join(stray)}, which "
                         f"is not among the selected contrasts ({', '.join(contrasts)}); check "
                         "the filter file or --contrasts.")
    database = execution.bids_database_dir
    if database and Path(database).resolve().is_relative_to(Path(execution.bids_dir).resolve()):
        raise UsageError(f"{database}: --bids-database-dir lies inside the input dataset, which "
                         "is never written to; choose a folder outside it (e.g. in the work "
                         "folder).")
    layout = BIDSLayout(execution.bids_dir, validate=False,
                        database_path=execution.bids_database_dir, reset_database=False)
    available = layout.get_subjects()
    subjects = execution.participant_label or available
    unknown = sorted(set(subjects) - set(available))
    if unknown:
        raise UsageError(f"{execution.bids_dir}: no participant(s) {', '.join(unknown)} in this "
                         f"dataset (it has: {', '.join(available) or 'none'}); check "
                         "--participant-label.")
    if execution.session_label:
        sessions = set(layout.get_sessions(subject=subjects))
        missing = sorted(set(execution.session_label) - sessions)
        if missing:
            raise UsageError(f"{execution.bids_dir}: no session(s) {', '.join(missing)} for the "
                             f"selected participant(s) (they have: "
                             f"{', '.join(sorted(sessions)) or 'none'}); check --session-label.")
    prepare_work_dir(execution.work_dir, execution.clean_workdir)
    # what a killed run left: temporary files and sink staging folders (a live run's are fresh)
    remove_stale_temporaries(execution.output_dir, (TEMPORARY_PREFIX, STAGING_PREFIX))
    groups = collect_inputs(layout, subjects, execution.session_label, contrasts, filters)
    groups, skipped = split_by_image_content(groups, logger)
    originals: dict[str, str] = {}
    if axes:
        # evaluation mode: the pipeline runs on simulated thick-slice copies; N4 is skipped so
        # that the scores measure super-resolution alone against the untouched originals
        groups, originals = write_simulated_dataset(
            groups, execution.bids_dir, str(Path(execution.work_dir) / "simulated_bids"), axes,
            workflow.simulate_protocol, workflow.simulate_factor)
        workflow.bias_correction = False
    # the INR's joint models need two images; JTV and the unpaired method work on one
    needed = 2 if workflow.method == "inr" and config.inr.model != "single" else 1
    runnable = []
    for group in groups:
        if len(group.images) < needed:
            skipped.append(group)
            logger.error("%s: skipped: %d image(s) of %s found, --model %s needs at least %d; "
                         "add images or use --model single.", group.label, len(group.images),
                         "/".join(contrasts), config.inr.model, needed)
        else:
            runnable.append(group)
    return runnable, skipped, originals


def node_timings(nodes) -> list[tuple[str, float]]:
    """``(node, seconds)`` of every finished node of a run, slowest first (a MapNode's
    seconds are the sum over its items; cached nodes count the run that made them)."""
    timings = []
    for node in nodes:
        try:
            runtime = node.result.runtime
        except Exception:  # a node without a readable result (crashed, not run)
            continue
        runs = runtime if isinstance(runtime, list) else [runtime]
        seconds = sum(float(getattr(r, "duration", 0.0) or 0.0) for r in runs)
        timings.append((node.fullname, seconds))
    return sorted(timings, key=lambda item: -item[1])


def poll_seconds(subjects: int) -> float:
    """How often nipype's scheduler looks for finished steps (nipype's default: 2 s).

    Each of a subject's ~25 steps waits for the next look before the step after it starts: at
    0.5 s that was ~12 s of a phantom run's 42 s spent waiting.  A look walks the whole graph,
    so a process holding many subjects looks less often."""
    return 0.1 if subjects <= 8 else 0.5


def execute_workflow(config: AppConfig, runnable: list, space, originals: dict,
                     logger: logging.Logger) -> bool:
    """Build and run the workflow of ``runnable`` (MultiProc); return whether it failed."""
    from nipype import config as nipype_config

    from mcinr_bids.workflows.base import init_mcinr_wf
    from mcinr_bids.workflows.processes import WatchedMultiProc, stop_on_interrupt

    execution = config.execution
    nipype_config.update_config({
        "execution": {"crashfile_format": "txt", "stop_on_first_crash":
                      execution.stop_on_first_crash, "remove_unnecessary_outputs": False,
                      "check_version": False, "get_linked_libs": False,
                      "poll_sleep_duration": poll_seconds(len(runnable))},
        "monitoring": {"enabled": False}})
    source_dir = (str(Path(execution.work_dir) / "simulated_bids") if originals
                  else execution.bids_dir)
    wf = init_mcinr_wf(config=config, groups=runnable, space=space, originals=originals,
                       source_dir=source_dir)
    # forkserver: workers start from a clean process, never forked from one whose torch/OpenMP
    # thread pools are already running (a forked child can deadlock on their locks)
    plugin_args = {"n_procs": execution.nprocs, "raise_insufficient": False,
                   "mp_context": "forkserver", "n_gpu_procs": execution.n_gpu_procs}
    if execution.mem_gb:
        plugin_args["memory_gb"] = execution.mem_gb
    # nipype's scheduler runs a full garbage collection before each submission and after each
    # node it runs in this process (about 50 per subject); with torch, pybids and the workflow
    # loaded each took 0.2 s, during which nothing is submitted.  What is alive now stays alive
    # for the run: freeze it out of those collections.
    gc.collect()
    gc.freeze()
    interrupt = signal.signal(signal.SIGINT, stop_on_interrupt)
    try:
        # MultiProc whose workers end when this process dies (kill -9 of the PID alone)
        graph = wf.run(plugin=WatchedMultiProc(plugin_args=plugin_args))
        if execution.verbose:
            logger.info("time per step (s):\n%s", "\n".join(
                f"{seconds:9.1f}  {name}" for name, seconds in node_timings(graph.nodes())))
    except RuntimeError:
        # nipype's own message is a list of traceback lines or "2 raised. Re-raising first.":
        # each failed step's own error, from its crash file, says what happened and where
        for line in crash_summaries(execution.output_dir, config.run_uuid):
            logger.error("%s", line)
        logger.error("the workflow failed; crash files are in %s/sub-*/log/%s/",
                     execution.output_dir, config.run_uuid)
        return True
    finally:
        signal.signal(signal.SIGINT, interrupt)
        gc.unfreeze()
    return False


def crash_summaries(output_dir: str, run_uuid: str) -> list[str]:
    """One line per crash file of this run: the subject, the failed step and the error it
    raised (the crash file's last line, e.g. ``OSError: [Errno 28] No space left on
    device: '/out/...'``)."""
    lines = []
    for crash in sorted(Path(output_dir).glob(f"sub-*/log/{run_uuid}/crash-*.txt")):
        try:
            text = crash.read_text(errors="replace").strip().splitlines()
        except OSError:
            continue
        node = next((line.split(":", 1)[1].strip() for line in text
                     if line.startswith("Node:")), crash.name)
        error = next((line.strip() for line in reversed(text) if line.strip()), "?")
        lines.append(f"{crash.parts[-4]}: step {node} failed: {error}")
    return lines


#: the longest folder the worker pool's socket fits in: a UNIX socket path holds 107 bytes, of
#: which ``/pymp-XXXXXXXX/listener-XXXXXXXX`` take 32
SOCKET_FOLDER_MAX = 72


def use_work_temporaries(work_dir: Path) -> None:
    """Temporary files (ANTs' transforms, ...) of this process and its workers go into the
    work folder, not the system's /tmp: nothing is written outside the output and work
    folders.  Except, in a work folder too deep for it, the socket of the worker pool: it
    stays in the system's temporary folder (a deeper one ended the run, "AF_UNIX path too
    long")."""
    import multiprocessing.util
    import tempfile

    folder = work_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    if len(str(folder)) > SOCKET_FOLDER_MAX:
        multiprocessing.util.get_temp_dir()  # made now, under the system's TMPDIR, and kept
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # read TMPDIR again


def warn_about_earlier_outputs(config: AppConfig, runnable: list, space,
                               logger: logging.Logger) -> None:
    """A warning per subject whose folder holds outputs of an earlier run with other options
    (they stay beside this run's: say so rather than mix them in silence)."""
    from mcinr_bids.config import OUTPUT_DESC
    from mcinr_bids.pipeline.bids import bids_suffix, choose_reference, resolution_label

    for group in runnable:
        label = space.name if space.is_template else bids_suffix(
            group.images[choose_reference(group.images)])
        found = earlier_outputs(config.execution.output_dir, group, label,
                                resolution_label(config.workflow.output_resolution),
                                OUTPUT_DESC[config.workflow.method])
        if found:
            logger.warning("%s: %d output(s) of an earlier run with other options stay beside "
                           "this run's (e.g. %s); remove them if they are not wanted.",
                           group.label, len(found), found[0])


def run_participant(config: AppConfig, logger: logging.Logger) -> int:
    from mcinr_bids.pipeline.descriptions import write_derivative_metadata
    from mcinr_bids.pipeline.templates import TemplateError, resolve_output_space
    from mcinr_bids.reports.participant import assemble_report

    execution, workflow = config.execution, config.workflow
    runnable, skipped, originals = select_inputs(config, logger)
    work_dir = Path(execution.work_dir)
    if not runnable:
        logger.error("no subject has enough usable images; nothing to do.")
        return EXIT_FAILED
    if workflow.method == "unpaired":  # every model is there before anything is written
        from mcinr_bids.pipeline.unpaired_models import model_files_for, models_folder

        for group in runnable:
            model_files_for(group.images, models_folder(config))
    try:
        space = resolve_output_space(workflow.output_space, str(work_dir / "templates"))
    except TemplateError as error:
        raise UsageError(str(error)) from error
    if workflow.output_space == "MNI152NLin2009cAsym" and space.name != workflow.output_space:
        logger.warning("TemplateFlow has no local MNI152NLin2009cAsym in TEMPLATEFLOW_HOME; "
                       "using nilearn's %s template instead (outputs are named space-%s).",
                       space.name, space.name)

    warn_about_earlier_outputs(config, runnable, space, logger)
    use_work_temporaries(work_dir)
    write_derivative_metadata(execution.output_dir, execution.bids_dir)
    config.save(work_dir / f"config-{config.run_uuid}.toml")
    for group in runnable:
        config.save(Path(execution.output_dir) / f"sub-{group.subject}" / "log"
                    / config.run_uuid / "mcinr.toml")
    failed = execute_workflow(config, runnable, space, originals, logger)
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
    from mcinr_bids.reports.group import aggregate_metrics

    damaged: list[str] = []

    def warn(message: str) -> None:
        damaged.append(message)
        logger.error("%s", message)

    table = aggregate_metrics(config.execution.output_dir, config.execution.participant_label,
                              warn=warn)
    print(f"group metrics: {table}")
    return EXIT_FAILED if damaged else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no network check for nipype updates
    build_parser().parse_args(argv)  # usage errors and --help exit here, as argparse does
    from mcinr_bids.pipeline.bids import BIDSError, check_folders

    try:
        config = build_config(argv)
        logger = _setup_logging(config.execution.verbose)
        if config.execution.analysis_level == "group" and config.workflow.train_unpaired:
            from mcinr_bids.cli.train_unpaired import run_train_unpaired

            check_folders(config.execution.bids_dir, config.execution.output_dir,
                          config.execution.work_dir)
            return run_train_unpaired(config, logger)
        if config.execution.analysis_level == "group":
            # the group level reads the derivatives only: the raw data may be gone
            return run_group(config, logger)
        check_folders(config.execution.bids_dir, config.execution.output_dir,
                      config.execution.work_dir)
        return run_participant(config, logger)
    except (UsageError, BIDSError, ValueError) as error:
        print(f"mcinr-bids: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # an unwritable or full output/work folder, or a damaged file
        print(f"mcinr-bids: error: {describe_os_error(error, 'the output and work folders')}",
              file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

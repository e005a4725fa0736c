"""The group level's ``--train-unpaired``: one unpaired model per contrast from the selected
participants' images, and where the participant level finds them."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from mcinr_bids.pipeline.unpaired_models import MODEL_DESC, model_file, models_folder


def cohort_images(config, logger: logging.Logger) -> dict[str, list[str]]:
    """The selected participants' images of each contrast (unreadable ones left out)."""
    from bids import BIDSLayout

    from mcinr_bids.cli.inputs import load_filters, split_by_image_content
    from mcinr_bids.pipeline.bids import bids_suffix, collect_inputs

    execution = config.execution
    layout = BIDSLayout(execution.bids_dir, validate=False,
                        database_path=execution.bids_database_dir, reset_database=False)
    subjects = execution.participant_label or layout.get_subjects()
    groups = collect_inputs(layout, subjects, execution.session_label,
                            config.workflow.contrasts, load_filters(execution.bids_filter_file))
    groups, _ = split_by_image_content(groups, logger)
    images: dict[str, list[str]] = {}
    for group in groups:
        for path in group.images:
            images.setdefault(bids_suffix(path), []).append(path)
    return images


def run_train_unpaired(config, logger: logging.Logger) -> int:
    """Train and write one model per contrast (and the ``unpaired-nocontrast`` ablation with
    ``--evaluate-ablation``); resumable from ``<work_dir>/unpaired``. Exit code."""
    from mcinr_bids.core.slices import load_acquisition
    from mcinr_bids.methods.unpaired.data import slice_factor
    from mcinr_bids.methods.unpaired.train import train_unpaired, write_model
    from mcinr_bids.pipeline.bids import bids_stem, prepare_work_dir

    execution = config.execution
    work = prepare_work_dir(execution.work_dir, execution.clean_workdir) / "unpaired"
    work.mkdir(parents=True, exist_ok=True)
    folder = models_folder(config)
    settings = config.unpaired  # [execution]'s device, threads and seed (share_execution)
    variants = {"unpaired": settings}
    if config.workflow.evaluate_ablation:
        variants["unpaired-nocontrast"] = dataclasses.replace(settings, weight_contrastive=0.0)
    written = 0
    for suffix, files in sorted(cohort_images(config, logger).items()):
        volumes = []
        for path in files:
            volume = load_acquisition(path)  # its sidecar: its slice profile
            volume.name = bids_stem(path)
            volumes.append(volume)
        low = [v for v in volumes if slice_factor(v) > 1]
        high = [v for v in volumes if slice_factor(v) == 1]
        if not low:
            logger.warning("%s: no thick-slice image among the selected participants; no "
                           "model trained.", suffix)
            continue
        for variant, variant_settings in variants.items():
            logger.info("%s: training the %s model on %d thick and %d isotropic image(s)",
                        suffix, variant, len(low), len(high))
            trained = train_unpaired(
                low, high, variant_settings, contrast=suffix, progress=True, say=logger.info,
                resume_file=str(work / f"desc-{MODEL_DESC[variant]}_{suffix}.resume.pt"))
            trained.training["low"] = [bids_relative(p, execution.bids_dir)
                                       for p in trained.training["low"]]
            trained.training["high"] = [bids_relative(p, execution.bids_dir)
                                        for p in trained.training["high"]]
            path, _ = write_model(trained, str(model_file(folder, suffix, variant)))
            logger.info("%s: %s model written to %s (%.0f s)", suffix, variant, path,
                        trained.seconds)
            written += 1
    if not written:
        logger.error("no contrast has a thick-slice image to learn from; no model written.")
        return 1
    return 0


def bids_relative(path: str, bids_dir: str) -> str:
    """``path`` relative to the dataset root where it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(bids_dir).resolve()))
    except ValueError:
        return str(path)

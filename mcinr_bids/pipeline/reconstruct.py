"""One subject's super-resolution from files: the step the BIDS App's fit node runs.

Pure numpy/torch/nibabel (no nipype): loads the bias-corrected LR images, carries the brain mask
onto each image's own grid through the rigid transforms, fits the INR on the original voxels in
world coordinates, predicts every contrast on the output grid and measures how well the model
reproduces each acquisition (the re-simulation residual) and the mutual information between
the predicted contrasts.
"""

from __future__ import annotations

import csv
import itertools
import os
import time

import nibabel as nib
import numpy as np

from mcinr_bids.core.geometry import (
    bounding_box,
    grid_coordinates,
    isotropic_grid,
    masks_grid,
)
from mcinr_bids.core.interpolation import mask_on_grid
from mcinr_bids.core.io import save_nifti, write_tsv
from mcinr_bids.core.slices import acquisitions, check_slice_thickness, load_acquisition
from mcinr_bids.core.statistics import mutual_information
from mcinr_bids.core.volumes import InputError, output_foreground
from mcinr_bids.methods.inr import fit_inr, save_checkpoint
from mcinr_bids.methods.inr.postprocessing import inr_output
from mcinr_bids.methods.inr.predict import predict_at_voxels, union_grid, write_history
from mcinr_bids.methods.inr.recipe import decide_recipe
from mcinr_bids.methods.inr.resume import exclusive_state
from mcinr_bids.methods.inr.settings import INRSettings
from mcinr_bids.quality.metrics import residual_summary

METRIC_COLUMNS = ("measure", "method", "image", "other_image", "value")
#: the fit's training state, every few epochs, in the output (work) folder: a rerun after the
#: fit was killed continues from it (removed when the fit ends)
RESUME_FILE = ".mcinr-fit-resume.pt"


def template_grid(template_file: str, resolution: float) -> tuple[tuple[int, int, int],
                                                                   np.ndarray]:
    """An isotropic RAS grid of ``resolution`` mm over a template's field of view.

    At the template's own voxel size (and orientation RAS) this is the template's grid.
    """
    image = nib.load(template_file)
    return isotropic_grid(bounding_box([(image.shape[:3], image.affine)]), resolution)


def estimate_memory_gb(image_files: list[str], template_file: str | None = None,
                       resolution: float = 1.0) -> float:
    """Peak memory (GB) of one subject's reconstruction, from the headers alone: 1 GB of
    libraries, ~32 bytes per output voxel and image (predictions, masks, temporaries) and ~120
    bytes per input voxel (training coordinates, values, profile points).  The BraTS pair on
    the 1 mm MNI grid: 2.1 GB estimated, 2.10 GB measured (benchmarks/RESULTS.md)."""
    headers = [nib.load(path) for path in image_files]
    if template_file:
        shape, _ = template_grid(template_file, resolution)
    else:
        shape, _ = isotropic_grid(bounding_box([(h.shape[:3], h.affine) for h in headers]),
                                  resolution)
    output_voxels = float(np.prod(shape)) * len(headers)
    input_voxels = float(sum(np.prod(h.shape[:3]) for h in headers))
    return 1.0 + 32 * output_voxels / 1e9 + 120 * input_voxels / 1e9


def resimulation_residual(fitted, index: int, volume, mask: np.ndarray) -> dict:
    """The model's prediction of LR image ``index`` at its own voxel centres versus the image
    (:func:`residual_summary`)."""
    predicted = predict_at_voxels(fitted, np.argwhere(mask), volume.affine,
                                  fitted.transforms[index])
    return residual_summary(predicted[:, index].astype(np.float64), volume, mask)


def append_metrics(metrics_file: str, rows: list[dict], path: str) -> str:
    """A copy of a metrics TSV with ``rows`` added (values rounded to 6 significant digits)."""
    with open(metrics_file, newline="") as handle:
        existing = [{k: (None if v == "n/a" else v) for k, v in row.items()}
                    for row in csv.DictReader(handle, delimiter="\t")]
    added = [{**row, "value": float(f"{row['value']:.6g}")} for row in rows]
    return write_metrics(existing + added, path)


def write_metrics(rows: list[dict], path: str) -> str:
    """Write the metrics table (columns :data:`METRIC_COLUMNS`) atomically; return ``path``."""
    write_tsv(rows, path, columns=list(METRIC_COLUMNS))
    return path


def load_subject(image_files: list[str], names: list[str], to_reference: list[np.ndarray],
                 reference_to_output: np.ndarray, brain_mask_file: str | None,
                 slice_thickness: list[float] | None = None
                 ) -> tuple[list, list | None, list[np.ndarray]]:
    """The app's inputs as the engine takes them: volumes, masks on each image's own grid (the
    reference's brain mask carried through the rigid transforms, or ``None``: automatic
    foreground masks) and each image's world -> output-space transform.  ``slice_thickness``
    (mm, one per image; 0 = the slice spacing) are the BIDS sidecars' ``SliceThickness``."""
    volumes = [load_acquisition(path) for path in image_files]
    for volume, name, thickness in zip(volumes, names,
                                       slice_thickness or [0.0] * len(volumes)):
        volume.name = name
        if thickness:
            volume.slice_thickness_mm = float(thickness)
            check_slice_thickness(volume)
    transforms = [np.asarray(reference_to_output) @ np.asarray(t) for t in to_reference]
    masks = None
    if brain_mask_file:
        masks = [mask_on_grid(brain_mask_file, v.shape, v.affine, grid_to_mask_world=t)
                 for v, t in zip(volumes, to_reference)]
        for volume, mask in zip(volumes, masks):
            if not mask.any():
                raise InputError(f"{volume.path}: the brain mask carried onto this image is "
                                 "empty; the registration to the reference failed.")
    return volumes, masks, transforms


def progress_reporter(say, every_seconds: float = 30.0):
    """An ``epoch_callback`` for :func:`fit_inr` that calls ``say(message)`` at most every
    ``every_seconds`` (and on the first epoch): epoch, loss per image, MI, time left."""
    started = time.perf_counter()
    last = [-float("inf")]
    first = []  # the first epoch this run reports (after a resume: not 1)

    def report(epoch: int, fitted) -> None:
        now = time.perf_counter()
        if not first:
            first.append(epoch)
        if now - last[0] < every_seconds and epoch != first[0]:
            return
        last[0] = now
        row = fitted.history[-1]
        elapsed = now - started
        left = elapsed / (epoch - first[0] + 1) * (fitted.settings.epochs - epoch)
        losses = ", ".join(f"{name} {row[f'loss_{name}']:.2e}" for name in fitted.names)
        say(f"INR fit epoch {epoch}/{fitted.settings.epochs}: loss {losses}; MI "
            f"{row['mutual_information']:.3f}; {elapsed:.0f} s so far, at most {left:.0f} s "
            "left")

    return report


def superresolve(volumes: list, settings: INRSettings, output_dir: str, *,
                 masks: list | None = None, transforms: list | None = None,
                 grid: tuple | None = None, resolution: float = 1.0, reference: int = 0,
                 progress: bool = False, say=None, jtv_settings=None) -> dict:
    """Fit one INR to ``volumes`` and write every output into ``output_dir``: the one subject
    pipeline of ``mcinr-fit`` and of the BIDS App's fit node (with a JTV blend weight > 0 the JTV
    reconstruction of ``jtv_settings``, default: the consistency step's profile, is averaged
    in).

    Parameters
    ----------
    volumes : list of Volume
        LR images, each on its own grid, named (``Volume.name``) uniquely: output file stems.
    masks, transforms, reference
        As :func:`mcinr_bids.methods.inr.fit_inr` takes them.
    grid : (shape, affine) or None
        Output grid; ``None``: an isotropic ``resolution`` mm grid over the union field of view.
    progress, say
        A progress bar; ``say(message)`` receives the fit's progress every 30 s (a log).

    Returns
    -------
    dict
        Paths: ``images`` (``<name>_desc-superres.nii.gz``), ``mask``
        (``desc-brain_mask.nii.gz``: inside every covering image's brain mask), ``residuals``
        (re-simulation residual of each input on its own grid), ``metrics``, ``checkpoint``,
        ``history``; the grid (``shape``, ``affine``); and the fit's summary
        (:meth:`FittedINR.summary`) with ``predict_seconds`` and ``total_seconds``.
    """
    started = time.perf_counter()
    os.makedirs(output_dir, exist_ok=True)
    if say:
        _, recipe = decide_recipe(settings, *acquisitions(volumes))
        for line in recipe.lines():
            say(f"recipe: {line}")
    resume_file = os.path.join(output_dir, RESUME_FILE)
    with exclusive_state(resume_file):
        fitted = fit_inr(volumes, settings, masks=masks, transforms=transforms,
                         reference=reference, progress=progress,
                         epoch_callback=progress_reporter(say) if say else None,
                         resume_file=resume_file)

    predict_started = time.perf_counter()
    shape, affine = grid if grid is not None else union_grid(fitted, resolution)
    predictions, _ = inr_output(fitted, (shape, affine), volumes, jtv_settings=jtv_settings,
                                say=say)
    brain = output_foreground(grid_coordinates(shape, affine), fitted.masks, fitted.affines,
                              fitted.transforms).reshape(shape)
    predict_seconds = time.perf_counter() - predict_started
    residuals = [resimulation_residual(fitted, index, volume, fitted.masks[index])
                 for index, volume in enumerate(volumes)]
    outputs = write_subject_outputs(output_dir, "superres", volumes, predictions, (shape, affine),
                                    brain, residuals, settings.mi_bins)
    outputs["checkpoint"] = os.path.join(output_dir, "model.pt")
    save_checkpoint(fitted, outputs["checkpoint"])
    outputs["history"] = os.path.join(output_dir, "history.tsv")
    write_history(fitted.history, outputs["history"])
    outputs.update(fitted.summary(), method="inr", predict_seconds=round(predict_seconds, 2),
                   total_seconds=round(time.perf_counter() - started, 2))
    return outputs


def write_subject_outputs(output_dir: str, desc: str, volumes: list, predictions: list,
                          grid: tuple, brain: np.ndarray, residuals: list[dict],
                          mi_bins: int = 32) -> dict:
    """Write one subject's reconstructions (``<name>_desc-<desc>.nii.gz``), the output brain
    mask, each input's residual map and the metrics table (re-simulation RMSE/PSNR, MI between
    the predicted contrasts inside the mask); return their paths."""
    shape, affine = grid
    names = [v.name for v in volumes]
    outputs = {"images": [], "residuals": [], "shape": list(shape),
               "affine": np.asarray(affine).tolist()}
    for name, prediction in zip(names, predictions):
        path = os.path.join(output_dir, f"{name}_desc-{desc}.nii.gz")
        save_nifti(prediction, affine, path)
        outputs["images"].append(path)
    outputs["mask"] = os.path.join(output_dir, "desc-brain_mask.nii.gz")
    save_nifti(brain, affine, outputs["mask"])
    rows = []
    for name, volume, residual in zip(names, volumes, residuals):
        path = os.path.join(output_dir, f"{name}_residual.nii.gz")
        save_nifti(residual["map"], volume.affine, path)
        outputs["residuals"].append(path)
        rows.append({"measure": "resimulation_rmse", "image": name,
                     "value": round(residual["rmse"], 6)})
        rows.append({"measure": "resimulation_psnr", "image": name,
                     "value": round(residual["psnr"], 4)})
    for first, second in itertools.combinations(range(len(volumes)), 2):
        value = mutual_information(predictions[first][brain], predictions[second][brain],
                                   bins=mi_bins)
        rows.append({"measure": "mutual_information", "image": names[first],
                     "other_image": names[second], "value": round(float(value), 6)})
    outputs["metrics"] = write_metrics(rows, os.path.join(output_dir, "metrics.tsv"))
    return outputs


def subject_grid(volumes: list, output_dir: str, masks: list | None, transforms: list | None,
                 grid: tuple | None, resolution: float) -> tuple[list, list, tuple]:
    """The output folder made, and the masks (automatic where not given), transforms (identity
    where not given) and output grid (default: an isotropic ``resolution`` mm grid over the
    masks) of a reconstruction by JTV or the unpaired method."""
    from mcinr_bids.core.volumes import prepare_masks

    os.makedirs(output_dir, exist_ok=True)
    masks = prepare_masks(volumes, masks)
    transforms = list(transforms) if transforms is not None else [None] * len(volumes)
    grid = grid or masks_grid(masks, [v.affine for v in volumes], transforms, resolution)
    return masks, transforms, grid


def resimulated(images: list, grid: tuple, volumes: list, masks: list, transforms: list
                ) -> tuple[np.ndarray, list[dict]]:
    """The output foreground on ``grid`` and each image's re-simulation residual through its
    acquisition's forward model (:func:`~mcinr_bids.core.forward.forward_project`)."""
    from mcinr_bids.core.forward import forward_project

    shape, affine = grid
    brain = output_foreground(grid_coordinates(shape, affine), masks,
                              [v.affine for v in volumes], transforms).reshape(shape)
    residuals = [residual_summary(forward_project(image, affine, volume, np.argwhere(mask),
                                                  transform), volume, mask)
                 for image, volume, mask, transform in zip(images, volumes, masks, transforms)]
    return brain, residuals


def reconstruct_subject_jtv(volumes: list, settings, output_dir: str, *,
                            masks: list | None = None, transforms: list | None = None,
                            grid: tuple | None = None, resolution: float = 1.0,
                            say=None) -> dict:
    """The joint-total-variation reconstruction (:func:`mcinr_bids.methods.jtv.reconstruct_jtv`) of
    ``volumes`` with the outputs of :func:`superresolve` (``<name>_desc-jtv.nii.gz``, mask,
    residuals of the JTV forward model, metrics, ``history.tsv`` of the objective per
    iteration) and its summary; no model file."""
    from mcinr_bids.methods.jtv import reconstruct_jtv

    started = time.perf_counter()
    masks, transforms, grid = subject_grid(volumes, output_dir, masks, transforms, grid,
                                           resolution)
    shape, affine = grid
    last = [time.perf_counter()]

    def report(iteration: int, row: dict) -> None:
        if say and (iteration == 1 or time.perf_counter() - last[0] >= 30):
            last[0] = time.perf_counter()
            say(f"JTV iteration {iteration}/{settings.iterations}: objective "
                f"{row['objective']:.4g}; {last[0] - started:.0f} s so far")

    images, facts = reconstruct_jtv(volumes, tuple(shape), affine, settings, masks=masks,
                                    transforms=transforms, progress=report)
    outputs = write_subject_outputs(output_dir, "jtv", volumes, images, grid, *resimulated(
        images, grid, volumes, masks, transforms))
    outputs["history"] = os.path.join(output_dir, "history.tsv")
    write_history(facts["history"], outputs["history"])
    outputs.update(method="jtv", epochs_run=int(settings.iterations),
                   selected_epoch=int(settings.iterations), stopped_early=False,
                   stop_reason="iteration count", fit_seconds=round(facts["seconds"], 2),
                   device="cpu", noise_sigma=[round(float(v), 6) for v in facts["noise_sigma"]],
                   total_seconds=round(time.perf_counter() - started, 2))
    return outputs


def reconstruct_subject_unpaired(volumes: list, model_files: list[str], output_dir: str, *,
                                 masks: list | None = None, transforms: list | None = None,
                                 grid: tuple | None = None, resolution: float = 1.0,
                                 device: str = "auto") -> dict:
    """Each image through its contrast's cohort-trained unpaired model
    (:func:`mcinr_bids.methods.unpaired.apply.predict_images`), with the outputs of
    :func:`superresolve` (``<name>_desc-unpaired.nii.gz``, mask, residuals of the box/point
    forward model, metrics, ``history.tsv``: each model's training losses per logged step);
    no model file (the models are the group level's)."""
    from mcinr_bids.methods.unpaired.apply import predict_images

    started = time.perf_counter()
    masks, transforms, grid = subject_grid(volumes, output_dir, masks, transforms, grid,
                                           resolution)
    images, models = predict_images(model_files, volumes, tuple(grid[0]), grid[1], masks,
                                    transforms, device)
    outputs = write_subject_outputs(output_dir, "unpaired", volumes, images, grid,
                                    *resimulated(images, grid, volumes, masks, transforms))
    history: dict[int, dict] = {}
    for volume, model in zip(volumes, models):
        for row in model.history:
            history.setdefault(row["step"], {"epoch": row["step"]} | {
                f"loss_{v.name}": None for v in volumes})[f"loss_{volume.name}"] = row["loss_hr"]
    outputs["history"] = os.path.join(output_dir, "history.tsv")
    write_history([history[step] for step in sorted(history)], outputs["history"])
    outputs.update(method="unpaired", models=list(model_files),
                   epochs_run=max((len(m.history) and m.history[-1]["step"]) for m in models),
                   fit_seconds=round(time.perf_counter() - started, 2),
                   device=str(next(models[0].generator.parameters()).device),
                   total_seconds=round(time.perf_counter() - started, 2))
    return outputs

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

from .anatomical import mask_on_grid
from .config import INRSettings
from .inr import fit_inr, load_volume, predict_on_grid, save_checkpoint, save_nifti
from .inr.data import apply_transform, corner_coordinates, output_foreground, world_coordinates
from .inr.predict import atomic_write, isotropic_grid, union_grid, write_history
from .metrics import mutual_information

METRIC_COLUMNS = ("measure", "method", "image", "other_image", "value")


def template_grid(template_file: str, resolution: float) -> tuple[tuple[int, int, int],
                                                                   np.ndarray]:
    """An isotropic RAS grid of ``resolution`` mm over a template's field of view.

    At the template's own voxel size (and orientation RAS) this is the template's grid.
    """
    image = nib.load(template_file)
    corners = corner_coordinates(image.shape[:3], image.affine)
    box = np.stack([corners.min(axis=0), corners.max(axis=0)])
    return isotropic_grid(box, resolution)


def resimulation_residual(fitted, index: int, volume, mask: np.ndarray) -> dict:
    """The model's prediction of LR image ``index`` at its own voxel centres versus the image.

    Returns RMSE (image units) and PSNR (dB, peak = the image's in-mask range) inside ``mask``,
    and the residual map (prediction - image, 0 outside the mask) on the image's grid.
    """
    indices = np.argwhere(mask)
    world = world_coordinates(volume.affine, indices)
    transform = fitted.transforms[index]
    world = apply_transform(transform, world)
    predicted = fitted.predict(world)[:, index]
    observed = volume.data[mask].astype(np.float64)
    rmse = float(np.sqrt(np.mean((predicted - observed) ** 2)))
    peak = float(observed.max() - observed.min())
    psnr = float(20 * np.log10(peak / rmse)) if rmse > 0 and peak > 0 else float("inf")
    residual = np.zeros(volume.shape, dtype=np.float32)
    residual[mask] = predicted - observed
    return {"rmse": rmse, "psnr": psnr, "map": residual}


def append_metrics(metrics_file: str, rows: list[dict], path: str) -> str:
    """A copy of a metrics TSV with ``rows`` added (values rounded to 6 significant digits)."""
    with open(metrics_file, newline="") as handle:
        existing = [{k: (None if v == "n/a" else v) for k, v in row.items()}
                    for row in csv.DictReader(handle, delimiter="\t")]
    added = [{**row, "value": float(f"{row['value']:.6g}")} for row in rows]
    return write_metrics(existing + added, path)


def write_metrics(rows: list[dict], path: str) -> str:
    def write(temporary):
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS, delimiter="\t")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("n/a" if row.get(k) is None else row[k])
                                 for k in METRIC_COLUMNS})

    atomic_write(path, write)
    return path


def superresolve_subject(image_files: list[str], names: list[str],
                         to_reference: list[np.ndarray], reference_to_output: np.ndarray,
                         reference_index: int, brain_mask_file: str | None,
                         settings: INRSettings, output_dir: str, resolution: float = 1.0,
                         template_file: str | None = None) -> dict:
    """Fit one INR to ``image_files`` and write the outputs into ``output_dir``.

    Parameters
    ----------
    image_files : list of str
        LR images (bias-corrected), each on its own grid.
    names : list of str
        Unique short names used for output files (e.g. BIDS file stems).
    to_reference : list of 4x4 arrays
        Each image's world space -> the reference image's world space (identity for it).
    reference_to_output : 4x4 array
        Reference world -> output space (template, or identity for native).
    reference_index : int
        Which image is the reference (the brain mask lies on its grid).
    brain_mask_file : str or None
        Brain mask on the reference grid; ``None`` uses each image's automatic foreground.
    template_file : str or None
        The output grid covers this template at ``resolution`` mm; ``None``: the union field of
        view of the images in the output (reference) space.

    Returns
    -------
    dict
        Paths (``images``, ``mask``, ``checkpoint``, ``history``, ``metrics``, ``residuals``: the
        re-simulation residual map of each input on its own grid) and the fit's
        facts (``epochs_run``, ``selected_epoch``, ``stop_reason``, ``fit_seconds``, ``device``,
        ``grid_cell_sizes_mm``: the grid levels used).
    """
    started = time.perf_counter()
    os.makedirs(output_dir, exist_ok=True)
    volumes = [load_volume(path) for path in image_files]
    for volume, name in zip(volumes, names):
        volume.name = name
    transforms = [np.asarray(reference_to_output) @ np.asarray(t) for t in to_reference]
    masks = None
    if brain_mask_file:
        masks = [mask_on_grid(brain_mask_file, v.shape, v.affine, grid_to_mask_world=t)
                 for v, t in zip(volumes, to_reference)]
        for volume, mask in zip(volumes, masks):
            if not mask.any():
                raise ValueError(f"{volume.path}: the brain mask carried onto this image is "
                                 "empty; the registration to the reference failed.")
    fitted = fit_inr(volumes, settings, masks=masks, transforms=transforms)

    predict_started = time.perf_counter()
    if template_file:
        shape, affine = template_grid(template_file, resolution)
    else:
        shape, affine = union_grid(fitted, resolution)
    predictions, _ = predict_on_grid(fitted, shape, affine)
    points = world_coordinates(affine, np.indices(shape).reshape(3, -1).T)
    brain = output_foreground(points, fitted.masks, fitted.affines,
                              fitted.transforms).reshape(shape)
    outputs = {"images": [], "shape": list(shape), "affine": np.asarray(affine).tolist()}
    for name, prediction in zip(names, predictions):
        path = os.path.join(output_dir, f"{name}_superres.nii.gz")
        save_nifti(prediction, affine, path)
        outputs["images"].append(path)
    outputs["mask"] = os.path.join(output_dir, "brain_mask.nii.gz")
    save_nifti(brain, affine, outputs["mask"])
    predict_seconds = time.perf_counter() - predict_started

    rows = []
    outputs["residuals"] = []
    for index, volume in enumerate(volumes):
        residual = resimulation_residual(fitted, index, volume, fitted.masks[index])
        path = os.path.join(output_dir, f"{names[index]}_residual.nii.gz")
        save_nifti(residual["map"], volume.affine, path)
        outputs["residuals"].append(path)
        rows.append({"measure": "resimulation_rmse", "image": names[index],
                     "value": round(residual["rmse"], 6)})
        rows.append({"measure": "resimulation_psnr", "image": names[index],
                     "value": round(residual["psnr"], 4)})
    for first, second in itertools.combinations(range(len(volumes)), 2):
        value = mutual_information(predictions[first][brain], predictions[second][brain],
                                   bins=settings.mi_bins)
        rows.append({"measure": "mutual_information", "image": names[first],
                     "other_image": names[second], "value": round(float(value), 6)})
    outputs["metrics"] = write_metrics(rows, os.path.join(output_dir, "metrics.tsv"))
    outputs["checkpoint"] = os.path.join(output_dir, "model.pt")
    save_checkpoint(fitted, outputs["checkpoint"])
    outputs["history"] = os.path.join(output_dir, "history.tsv")
    write_history(fitted.history, outputs["history"])
    outputs.update({
        "epochs_run": len(fitted.history),
        "selected_epoch": fitted.selected_epoch,
        "stopped_early": fitted.stopped_early,
        "stop_reason": fitted.stop_reason,
        "fit_seconds": round(fitted.fit_seconds, 2),
        "predict_seconds": round(predict_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        "device": fitted.device,
        "grid_cell_sizes_mm": fitted.settings.grid_cell_sizes_mm,
        "reference_index": reference_index,
    })
    return outputs


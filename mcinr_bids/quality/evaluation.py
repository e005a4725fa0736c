"""The paper's experiment on isotropic images: simulate LR acquisitions, super-resolve them with
INR variants and the cubic baselines, and score against the isotropic originals (Table 1)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mcinr_bids.core import geometry
from mcinr_bids.core.interpolation import cubic_on_grid, mask_on_grid
from mcinr_bids.core.slices import load_acquisition
from mcinr_bids.core.volumes import Volume, automatic_foreground_mask
from mcinr_bids.methods.inr.fit import fit_inr
from mcinr_bids.methods.inr.postprocessing import inr_output
from mcinr_bids.methods.inr.settings import MODELS, INRSettings
from mcinr_bids.quality import metrics, simulation
from mcinr_bids.quality.metrics import mutual_information_rows, slice_rows, truth_rows

BASELINES = ("cubic", "cubic-clamped", "jtv")
INR_MODELS = MODELS  # the INR variants the evaluation fits


@dataclass
class Simulation:
    """Isotropic originals, their simulated LR versions and the evaluation mask."""

    truths: list[np.ndarray]
    affine: np.ndarray
    low_resolution: list[Volume]
    mask: np.ndarray
    names: list[str] = field(default_factory=list)
    #: each image's thick voxel axis on the isotropic grid, the slice spacing in voxels, and
    #: the index of the first acquired slice (decimation; ``None`` for thick slabs, whose
    #: centres lie between the isotropic slices)
    axes: list[int] = field(default_factory=list)
    factor: int = 4
    offset: int | None = None
    #: each truth's detail along its removed axis relative to its best axis, and warnings
    #: where that is low (:func:`mcinr_bids.quality.metrics.truth_detail`)
    detail: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: a lesion (or any region) on the truths' grid: strict PSNR and SSIM there as well
    lesion: np.ndarray | None = None


def simulate_acquisitions(volumes: list[Volume], axes: list[str], protocol: str = "decimate",
                          factor: int = 4, mask: np.ndarray | None = None,
                          **protocol_options) -> Simulation:
    """LR version of each isotropic volume along its world axis letter (``S``, ``A``, ``R``...).

    All volumes must share one grid.  The evaluation mask defaults to the intersection of the
    volumes' automatic foreground masks.
    """
    if len(axes) != len(volumes):
        raise ValueError(f"give one axis per image: {len(volumes)} images, {len(axes)} axes")
    reference = volumes[0]
    for volume in volumes[1:]:
        if not on_one_grid([reference, volume]):
            raise ValueError(f"{volume.path or volume.name}: evaluation needs all isotropic "
                             "images on one grid (co-registered, same shape and affine)")
    low, voxel_axes = [], []
    for volume, letter in zip(volumes, axes):
        axis = geometry.voxel_axis(volume.affine, letter)
        voxel_axes.append(axis)
        thickness = None  # thick slices: contiguous slabs
        if protocol == "decimate":
            data, affine = simulation.decimate(volume.data, volume.affine, axis, factor)
            # one isotropic slice kept in ``factor``: thin slices with gaps, point samples
            thickness = float(geometry.voxel_sizes(volume.affine)[axis])
        elif protocol == "thick":
            data, affine = simulation.thick_slices(volume.data, volume.affine, axis, factor,
                                                 **protocol_options)
        else:
            raise ValueError("protocol must be 'decimate' or 'thick'")
        low.append(Volume(data=data, affine=affine, name=volume.name, path=volume.path,
                          slice_thickness_mm=thickness))
    if mask is None:
        mask = np.logical_and.reduce([automatic_foreground_mask(v.data) for v in volumes])
    checks = [metrics.truth_detail(v.data, mask, v.affine, axis, v.name or f"image {i + 1}")
              for i, (v, axis) in enumerate(zip(volumes, voxel_axes))]
    return Simulation(truths=[v.data for v in volumes], affine=reference.affine,
                      low_resolution=low, mask=mask, names=[v.name for v in volumes],
                      axes=voxel_axes, factor=factor,
                      offset=factor - 1 if protocol == "decimate" else None,
                      detail=[c[0] for c in checks], warnings=[c[1] for c in checks if c[1]])


def score(predictions: list[np.ndarray], simulation: Simulation) -> dict[str, float]:
    """PSNR and SSIM per image in both conventions (and strict inside the simulation's lesion),
    the banding index across each image's thick axis (and the truth's), strict PSNR on the
    acquired slices and between them (decimation), and the MI errors (first two images)."""
    row: dict[str, float] = {f"detail_truth_{name}": value
                             for name, value in zip(simulation.names, simulation.detail)}
    for index, (name, prediction, truth) in enumerate(zip(simulation.names, predictions,
                                                          simulation.truths)):
        for convention in metrics.CONVENTIONS:
            row[f"psnr_{convention}_{name}"] = metrics.psnr(prediction, truth, simulation.mask,
                                                            convention)
            row[f"ssim_{convention}_{name}"] = metrics.ssim(prediction, truth, simulation.mask,
                                                            convention)
        if simulation.lesion is not None:
            for measure in ("psnr", "ssim"):
                row[f"{measure}_lesion_{name}"] = getattr(metrics, measure)(
                    prediction, truth, simulation.mask, "strict", region=simulation.lesion)
        if index < len(simulation.axes):
            axis, offset = simulation.axes[index], simulation.offset
            phase = offset if offset is not None else 0
            row[f"banding_{name}"] = metrics.banding_index(prediction, simulation.mask, axis,
                                                           simulation.factor, phase)
            row[f"banding_truth_{name}"] = metrics.banding_index(truth, simulation.mask, axis,
                                                                 simulation.factor, phase)
            if offset is not None:
                split = metrics.psnr_by_slice(prediction, truth, simulation.mask, axis,
                                              simulation.factor, offset)
                row[f"psnr_acquired_{name}"] = split["acquired"]
                row[f"psnr_unacquired_{name}"] = split["unacquired"]
    if len(predictions) >= 2:
        row.update(metrics.mutual_information_errors(predictions[:2], simulation.truths[:2],
                                                     simulation.mask))
    return row


def run_baseline(method: str, simulation: Simulation, jtv_settings=None
                 ) -> tuple[list[np.ndarray], float]:
    """Cubic splines (``cubic``, ``cubic-clamped``) or the joint-total-variation reconstruction
    (``jtv``; its slice profile is the simulated acquisitions': ``point`` for decimation,
    ``box`` for thick slices)."""
    start = time.perf_counter()
    shape = simulation.truths[0].shape
    if method == "jtv":
        from mcinr_bids.methods.jtv import JTVSettings, reconstruct_jtv

        settings = jtv_settings or JTVSettings()
        predictions, _ = reconstruct_jtv(simulation.low_resolution, shape, simulation.affine,
                                         settings)
        return predictions, time.perf_counter() - start
    predictions = [cubic_on_grid(v.data, v.affine, shape, simulation.affine,
                                 clamp=method == "cubic-clamped")
                   for v in simulation.low_resolution]
    return predictions, time.perf_counter() - start


def run_inr(settings: INRSettings, simulation: Simulation, progress: bool = False,
            epoch_callback=None):
    """Fit on the LR images and predict on the isotropic grid, then the INR's post-processing
    (:func:`~mcinr_bids.methods.inr.postprocessing.inr_output`, through the simulated
    acquisitions' slice profile: ``point`` for decimation, ``box`` for thick slices); returns
    (predictions, fitted)."""
    fitted = fit_inr(simulation.low_resolution, settings, progress=progress,
                     epoch_callback=epoch_callback)
    grid = (simulation.truths[0].shape, simulation.affine)
    return inr_output(fitted, grid, simulation.low_resolution)[0], fitted


def consistent(settings: INRSettings, predictions: list[np.ndarray], grid: tuple,
               volumes: list[Volume], masks: list, transforms: list,
               foreground: np.ndarray | None = None) -> list[np.ndarray]:
    """Predictions on ``grid`` after the data-consistency step of a fit's ``settings``
    (:func:`mcinr_bids.methods.inr.consistency.back_project`)."""
    from mcinr_bids.methods.inr.consistency import back_project

    return back_project(predictions, grid, volumes, masks=masks, transforms=transforms,
                        steps=settings.consistency_steps,
                        dilation_mm=settings.foreground_dilation_mm, foreground=foreground)


def evaluate(simulation: Simulation, methods: list[str], settings: INRSettings,
             progress: bool = False, unpaired_models: dict[str, list[str]] | None = None
             ) -> list[dict]:
    """One row per method: method, fit/prediction seconds and every score; ``unpaired_models``
    (variant, e.g. ``unpaired`` -> one model file per image) add a row per variant."""
    rows = []
    for variant, files in (unpaired_models or {}).items():
        from mcinr_bids.methods.unpaired.apply import predict_images

        start = time.perf_counter()
        predictions, _ = predict_images(files, simulation.low_resolution,
                                        simulation.truths[0].shape, simulation.affine,
                                        device=settings.device)
        rows.append({"method": variant, "fit_seconds": 0.0,
                     "predict_seconds": time.perf_counter() - start,
                     **score(predictions, simulation)})
    for method in methods:
        if method in BASELINES:
            predictions, seconds = run_baseline(method, simulation)
            row = {"method": method, "fit_seconds": 0.0, "predict_seconds": seconds}
        elif method in INR_MODELS:
            method_settings = INRSettings.from_dict({**settings.to_dict(), "model": method})
            start = time.perf_counter()
            predictions, fitted = run_inr(method_settings, simulation, progress)
            row = {"method": method, "fit_seconds": fitted.fit_seconds,
                   "predict_seconds": time.perf_counter() - start - fitted.fit_seconds,
                   "epochs": len(fitted.history), "selected_epoch": fitted.selected_epoch}
        else:
            raise ValueError(f"unknown method {method!r}; choose from "
                             f"{', '.join(BASELINES + INR_MODELS)}")
        row.update(score(predictions, simulation))
        rows.append(row)
    return rows


def jtv_on_truth_grid(volumes: list[Volume], masks: list, transforms: list, truth_file: str,
                      settings, start: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The JTV reconstruction of every contrast, each on its isotropic original's grid (the
    truths share ``truth_file``'s grid) in its own image's world, from the same inputs as the
    app's reconstruction (LR volumes, masks on their own grids, world -> output transforms),
    from cubic splines or from ``start`` (one image per truth, on its grid in its world).

    As a model is predicted through each image's transform, JTV runs on the truth grid carried
    into the output world by the transform of each image it scores (one run per distinct
    transform): an image's registration error then does not count against JTV alone (cubic
    splines are scored in each image's own world)."""
    import nibabel as nib

    from mcinr_bids.methods.jtv import reconstruct_jtv

    truth = nib.load(truth_file)
    shape, affine = tuple(truth.shape[:3]), truth.affine
    grids = [(np.eye(4) if t is None else np.asarray(t)) @ affine for t in transforms]
    results: list = [None] * len(volumes)
    for index, grid in enumerate(grids):
        if results[index] is not None:
            continue
        mine = [np.allclose(other, grid, atol=1e-3) for other in grids]
        # the start of every contrast on this grid (its own where the grids agree)
        begin = None if start is None else [
            image if same else cubic_on_grid(image, affine, shape, grid, transform=t)
            for image, t, same in zip(start, transforms, mine)]
        images, _ = reconstruct_jtv(volumes, shape, grid, settings, masks=masks,
                                    transforms=transforms, start=begin)
        for number, same in enumerate(mine):
            if same:
                results[number] = images[number]
    return results


def model_outputs(model, truths: list, volumes: list[Volume], jtv_settings=None
                  ) -> list[np.ndarray]:
    """A fitted model's output as the app delivers it
    (:func:`~mcinr_bids.methods.inr.postprocessing.inr_output`) on each truth's grid in its
    image's world: the grid carried into the model's space by the transform that image was
    fitted with (one run per distinct grid), as JTV is scored (:func:`jtv_on_truth_grid`)."""
    grids = [(tuple(truth.shape[:3]), (np.eye(4) if transform is None else np.asarray(transform))
              @ truth.affine) for truth, transform in zip(truths, model.transforms)]
    outputs: list = [None] * len(truths)
    for index, grid in enumerate(grids):
        if outputs[index] is None:
            same = [i for i, other in enumerate(grids) if geometry.same_grid(grid, other, 1e-6)]
            images, _ = inr_output(model, grid, volumes, jtv_settings=jtv_settings, keep=same)
            for number in same:
                outputs[number] = images[number]
    return outputs


def evaluation_foreground(fitted: dict, lows: list, transforms: list | None,
                          masks: list | None) -> tuple[list, object]:
    """The transforms and the output foreground (world points -> bool) of the evaluation: the
    first model's, else those of ``masks`` (each LR image's mask on its own grid, dilated by
    2 mm) through ``transforms``."""
    from mcinr_bids.core.volumes import dilate_mask_mm, output_foreground

    if fitted:
        first = next(iter(fitted.values()))
        return first.transforms, first.foreground
    if transforms is None or masks is None:
        raise ValueError("give a checkpoint, or the transforms and masks of the inputs")
    dilated = [dilate_mask_mm(m, low.affine, 2.0) for m, low in zip(masks, lows)]

    def foreground(world):
        return output_foreground(world, dilated, [low.affine for low in lows], transforms)
    return transforms, foreground


def evaluate_subject(truth_files: list[str], low_resolution_files: list[str],
                     checkpoints: dict[str, str], names: list[str], *,
                     transforms: list | None = None, masks: list | None = None,
                     extra: dict[str, list[np.ndarray]] | None = None,
                     warn=None, device: str = "cpu", jtv_settings=None,
                     volumes: list[Volume] | None = None,
                     lesion_file: str | None = None) -> list[dict]:
    """Score fitted models, other reconstructions and the clamped cubic baseline against
    isotropic originals.

    ``truth_files[i]`` is the isotropic image that ``low_resolution_files[i]`` was simulated
    from (same world space).  Each model in ``checkpoints`` (method -> checkpoint path) is
    predicted at the voxel centres of each truth through the transform it was fitted with, so
    the truth is never resampled; ``extra`` (method -> one array per truth, on the truth's
    grid, e.g. :func:`jtv_on_truth_grid`) are scored as given; a model's JTV blend uses
    ``jtv_settings``; ``volumes``: the LR images as loaded (their slice thickness given;
    default: loaded from the files and their sidecars).  The evaluation mask is the
    truth's foreground inside the output foreground (the first model's, else that of
    ``masks``, each LR image's mask on its own grid, through ``transforms``).  Returns long
    rows ``{"method", "measure", "image", "value"}``: PSNR and SSIM in both conventions per
    image, banding and, when all truths share one grid, the paper's MI errors of the first
    two images (``image`` = n/a); the truth's detail along each removed axis (method
    ``truth``, measure ``truth_detail``), with ``warn(message)`` called where it is low
    (:func:`mcinr_bids.quality.metrics.truth_detail`).  ``lesion_file`` (a lesion mask in the
    truths' world space, label > 0) adds strict PSNR and SSIM inside the lesion
    (``psnr_lesion``, ``ssim_lesion``).  The models are evaluated on ``device`` (the fit's), in
    chunks.
    """
    import nibabel as nib

    from mcinr_bids.methods.inr.predict import load_checkpoint

    fitted = {method: load_checkpoint(path, device=device) for method, path in checkpoints.items()}
    lows = [nib.load(path) for path in low_resolution_files]
    transforms, foreground = evaluation_foreground(fitted, lows, transforms, masks)
    truths = [nib.load(path) for path in truth_files]
    low_volumes = volumes or [load_acquisition(path) for path in low_resolution_files]
    rows: list[dict] = []
    predictions: dict[str, list[np.ndarray]] = {"cubic-clamped": []}
    for method, model in fitted.items():
        predictions[method] = model_outputs(model, truths, low_volumes, jtv_settings)
    predictions.update({method: list(arrays) for method, arrays in (extra or {}).items()})
    masks_out = []
    for index, truth_image in enumerate(truths):
        truth = np.asanyarray(truth_image.dataobj, dtype=np.float32)
        shape, affine = truth.shape, truth_image.affine
        output_world = geometry.apply_transform(transforms[index],
                                                geometry.grid_coordinates(shape, affine))
        mask = automatic_foreground_mask(truth) & foreground(output_world).reshape(shape)
        masks_out.append(mask)
        low = lows[index]
        predictions["cubic-clamped"].append(cubic_on_grid(
            np.asanyarray(low.dataobj, dtype=np.float32), low.affine, shape, affine, clamp=True))
        acquisition = geometry.acquisition_on_grid(low.affine, affine)
        rows += truth_rows(truth, mask, affine, acquisition, names[index], warn)
        lesion = mask_on_grid(lesion_file, shape, affine) if lesion_file else None
        for method in predictions:
            rows += slice_rows(method, names[index], predictions[method][index], truth, mask,
                               acquisition)
            rows += metrics.score_rows(method, names[index], predictions[method][index],
                                       truth, mask, lesion)
    if len(truths) >= 2 and on_one_grid(truths):
        rows += mutual_information_rows(predictions, truths, masks_out)
    return rows


def on_one_grid(images: list, tolerance_mm: float = 0.01) -> bool:
    """Whether every image (nibabel or :class:`Volume`) lies on the first one's voxel grid."""
    first = (images[0].shape, images[0].affine)
    return all(geometry.same_grid((image.shape, image.affine), first, tolerance_mm)
               for image in images[1:])



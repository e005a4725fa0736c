"""What the derivatives say about themselves: dataset_description.json, .bidsignore, the
metrics' data dictionary, the methods text and the JSON sidecars, each saying what was run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib

from mcinr_bids import __version__
from mcinr_bids.core.geometry import thick_axis_letter, voxel_sizes
from mcinr_bids.core.io import write_once
from mcinr_bids.pipeline.bids import bids_stem, bids_suffix, bids_uri

CODE_URL = "https://github.com/mcinr-bids/mcinr-bids"
#: files the BIDS-Derivatives schema does not cover (bids-validator-deno reads this)
BIDSIGNORE = ("*_xfm.mat", "*_metrics.tsv", "*_metrics.json", "*_model.pt", "*_model.json",
              "*_history.tsv", "*.html", "**/figures", "**/log", "group_*")


def container_name() -> str | None:
    """``docker`` or ``apptainer`` when this process runs inside one, else ``None``."""
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return "apptainer"
    if Path("/.dockerenv").exists() or os.environ.get("MCINR_CONTAINER") == "docker":
        return "docker"
    return None


def derivative_description(bids_dir: str | Path) -> dict:
    """``dataset_description.json`` of the derivatives (GeneratedBy, SourceDatasets)."""
    generated = {"Name": "mcinr-bids", "Version": __version__, "CodeURL": CODE_URL,
                 "Description": "Multi-contrast implicit neural representation "
                                "super-resolution (McGinnis, Shit et al., MICCAI 2023)."}
    container = container_name()
    if container:
        tag = os.environ.get("MCINR_IMAGE", f"mcinr-bids:{__version__}")
        generated["Container"] = {"Type": container, "Tag": tag}
    source = {"URL": Path(bids_dir).absolute().as_uri()}
    try:
        with open(Path(bids_dir) / "dataset_description.json") as handle:
            raw = json.load(handle)
        if raw.get("DatasetDOI"):
            source["DOI"] = raw["DatasetDOI"]
    except (OSError, json.JSONDecodeError):
        pass
    return {"Name": "mcinr-bids: isotropic super-resolved anatomical images",
            "BIDSVersion": "1.10.0", "DatasetType": "derivative",
            "GeneratedBy": [generated], "SourceDatasets": [source]}


def write_derivative_metadata(output_dir: str | Path, bids_dir: str | Path) -> None:
    """``dataset_description.json`` and ``.bidsignore`` at the derivatives root."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    write_once(output / "dataset_description.json",
               json.dumps(derivative_description(bids_dir), indent=2) + "\n")
    write_once(output / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")


#: the data dictionary of ``sub-X_desc-superres_metrics.tsv``
METRICS_DICTIONARY = {
    "measure": {
        "Description": "What the row measures.",
        "Levels": {
            "resimulation_rmse": "Root mean squared difference, inside the brain mask, between "
                                 "an input image and the model's prediction at that image's own "
                                 "voxel centres (input intensity units).",
            "resimulation_psnr": "Peak signal-to-noise ratio of the same comparison (dB; peak = "
                                 "the input's in-mask intensity range).",
            "mutual_information": "Mutual information (nats, 32-bin joint histogram) between "
                                  "two predicted contrasts inside the output brain mask.",
            "psnr_strict": "Evaluation mode: PSNR (dB) against the isotropic original, both "
                           "scaled by the original's in-mask range, inside the mask.",
            "ssim_strict": "Evaluation mode: 3D SSIM in the same convention.",
            "psnr_paper": "Evaluation mode: PSNR (dB) with each image scaled by its own "
                          "in-mask minimum and maximum (the paper's convention).",
            "ssim_paper": "Evaluation mode: SSIM in the paper's convention.",
            "banding_index": "Evaluation mode: max / min over the slice phases of the mean "
                             "|second difference| across the input's thick axis inside the "
                             "mask (about 1 without slice banding; method 'truth': the "
                             "original's own).",
            "truth_detail": "Evaluation mode, method 'truth': the original's detail along the "
                            "axis the simulation removed (mean |second difference| over mean "
                            "|first difference|) relative to its best axis; below 0.85 the "
                            "original was probably acquired thick there (a warning names the "
                            "better axis) and the scores measure agreement with an "
                            "interpolation.",
            "psnr_acquired": "Evaluation mode: strict PSNR on the isotropic slices that the "
                             "simulated acquisition kept (decimation only).",
            "psnr_unacquired": "Evaluation mode: strict PSNR on the slices between them.",
            "epsilon_mi_1": "Evaluation mode: |MI(pred1, true2) - MI(true1, true2)|.",
            "epsilon_mi_2": "Evaluation mode: |MI(true1, pred2) - MI(true1, true2)|.",
            "epsilon_mi_joint": "Evaluation mode: |MI(pred1, pred2) - MI(true1, true2)|.",
        },
    },
    "method": {"Description": "Evaluation mode only: what is scored against the isotropic "
                              "original (inr-split, inr-single, cubic-clamped); n/a otherwise."},
    "image": {"Description": "The input image (file name stem) the row is about."},
    "other_image": {"Description": "The second image of a mutual-information pair; n/a "
                                   "otherwise."},
    "value": {"Description": "The measured value."},
}


#: how each model joins the contrasts, in words
MODEL_WORDS = {
    "split": "one implicit neural representation with a shared trunk and one head per contrast "
             "(split-head; McGinnis, Shit et al., MICCAI 2023), fitted jointly to all images",
    "vanilla": "one implicit neural representation with a shared trunk and one output channel "
               "per contrast (vanilla multi-contrast; McGinnis, Shit et al., MICCAI 2023), "
               "fitted jointly to all images",
    "single": "one independent implicit neural representation per image (no information "
              "shared between contrasts)",
}


#: the joint-total-variation reconstruction, in words
JTV_WORDS = ("a joint-total-variation reconstruction of all contrasts on the output grid (the "
             "method of UniRes, Brudfors et al. 2019, reimplemented): each acquired voxel "
             "compared with the mean of its image over the voxel's slice profile ({profile}), "
             "data terms weighted by each image's noise level estimated from the data, and a "
             "prior on the joint gradient magnitude of the contrasts (weight {regularisation:g}, "
             "{iterations} Adam iterations from the cubic-spline interpolation)")


#: the slice profiles the forward models follow, each acquisition's own (core.slices)
PROFILE_WORDS = ("uniform across the slice thickness for thick 2D slices, the voxel centre for "
                 "slices at most half as thick as they are apart")


def jtv_words(settings: dict) -> str:
    """The JTV reconstruction with its settings (the ``[jtv]`` table), in words."""
    return JTV_WORDS.format(profile=PROFILE_WORDS,
                            regularisation=settings.get("regularisation", 1.0),
                            iterations=settings.get("iterations", 150))


def forward_model_words(settings) -> str:
    """How the fit compares the model with an acquired voxel (``settings``: INRSettings)."""
    if settings.psf is None:
        return ("each acquired voxel of a thick-slice image compared with the model's mean "
                "across its slice, any other with the model at the voxel's centre")
    if not settings.psf:
        return "each acquired voxel compared with the model at the voxel's centre"
    if settings.psf_profile == "box":
        points = (f"{settings.psf_samples} evenly spaced points"
                  if settings.psf_sampling == "stratified"
                  else f"{settings.psf_samples} random points each step")
        return ("each acquired voxel compared with the model's mean across its slice "
                f"thickness (a box profile, {points})")
    return ("each acquired voxel compared with the model's mean over that voxel's slice "
            "profile (Gaussian, FWHM one voxel along each axis)")


def consistency_words(steps: int) -> str:
    """The data-consistency step after the fit, in words ('' when off)."""
    if not steps:
        return ""
    where = PROFILE_WORDS
    return (f"; the prediction was then made consistent with each acquisition by {steps} "
            f"step{'s' if steps != 1 else ''} of iterative back-projection (re-simulated "
            f"through the image's slice profile, {where}, and the residual added back by "
            "cubic-spline interpolation)")


UNPAIRED_WORDS = ("each image passed through its contrast's unpaired contrastive "
                  "super-resolution network (Li et al. 2023, arXiv 2310.15767; trained at the "
                  "group level on the cohort's unpaired thick and isotropic images; planes "
                  "across the thick axis refined along it on the image's own grid, both stacks "
                  "averaged, then cubic-spline resampled)")


def inr_settings_of(values: dict):
    """The INRSettings of a (possibly partial) settings dict; unknown keys are ignored."""
    import dataclasses

    from mcinr_bids.methods.inr.settings import INRSettings

    known = {f.name for f in dataclasses.fields(INRSettings)}
    return INRSettings.from_dict({k: v for k, v in values.items() if k in known})


def blend_words(weight: float) -> str:
    """The INR's blend with the JTV reconstruction, in words ('' when off)."""
    if not weight:
        return ""
    return (f"; the output is the weighted mean of that prediction ({1 - weight:g}) and the "
            f"joint-total-variation reconstruction of the same images started from it "
            f"({weight:g}; UniRes' method, Brudfors et al.)")


def destripe_words(on: bool) -> str:
    """The acquired-slice softening (:mod:`mcinr_bids.methods.inr.softening`), in words (''
    when off)."""
    if not on:
        return ""
    return ("; last, the acquired slices of each image with thick slices were softened by one "
            "diffusion step along the slice axis, of the smallest weight that evens the "
            "output's through-plane roughness across slice phases (against slice banding)")


def through_plane_words(weight: float, steps: int) -> str:
    """The through-plane network's share of the INR's prediction, in words ('' when off)."""
    if not weight:
        return ""
    return (f"; for each image with thick slices that output (weight {1 - weight:.2g}) was "
            "averaged with a self-supervised through-plane network's reconstruction (weight "
            f"{weight:.2g}; a residual CNN trained for {steps} steps on the image's own slices "
            "degraded in-plane as the acquisition degraded the slice axis, then run across the "
            "slice axis on the cubic interpolation and on that output, the two results "
            "averaged; the idea of SMORE, Zhao et al. 2021)")


def methods_text(*, n_images: int, reference: str, space: str, resolution: float,
                 settings, bias_correction: bool, evaluation: bool,
                 jtv_settings: dict | None = None, unpaired: bool = False,
                 qc_holdout: int = 0, slabs: list[tuple[str, float, float]] = (),
                 registration: str = "rigid", acquisitions: str = "") -> str:
    """The boilerplate of one subject's processing, saying what was run (``settings``: the
    INRSettings of the fit; ``jtv_settings``: the ``[jtv]`` table when the method is JTV;
    ``slabs``: (image, slice thickness, spacing) of the images whose sidecar's thickness is not
    their spacing; ``acquisitions``: the recipe's account of them, which chose the INR's
    stages)."""
    aligned = ("rigidly registered (mutual information) to" if registration == "rigid" else
               "aligned by their scanner coordinates (already co-registered; no registration) "
               "with")
    preprocessing = (f"corrected for intensity non-uniformity (N4, antspyx) and {aligned} "
                     f"{reference}" if bias_correction
                     else f"{aligned} {reference} (no N4 bias-field correction)")
    text = (f"The {n_images} anatomical images of this subject were {preprocessing}, which was "
            f"rigidly registered to {space}. ")
    if unpaired:
        text += (f"{UNPAIRED_WORDS[0].upper()}{UNPAIRED_WORDS[1:]}, onto an isotropic grid "
                 f"({resolution:g} mm) in {space} space.")
    elif jtv_settings is not None:
        words = jtv_words(jtv_settings)
        text += (f"{words[0].upper()}{words[1:]}, was computed from the original voxels of the "
                 f"images, in world coordinates, on an isotropic grid ({resolution:g} mm) in "
                 f"{space} space.")
    else:
        text += (f"{MODEL_WORDS[settings.model][0].upper()}{MODEL_WORDS[settings.model][1:]} "
                 f"was fitted to the original voxels of the images, in world coordinates, "
                 f"{forward_model_words(settings)}, and predicted on an isotropic grid "
                 f"({resolution:g} mm) in {space} space"
                 + consistency_words(settings.consistency_steps)
                 + through_plane_words(settings.network_weight, settings.through_plane_steps)
                 + blend_words(settings.blend_weight) + f"{destripe_words(settings.destripe_on)}.")
        if acquisitions:
            text += (f" These stages were chosen from the acquisitions ({acquisitions}) by the "
                     "recipe of mcinr-bids, each with its own setting.")
    if slabs and not unpaired:
        text += " The slice profiles followed the sidecars' slice thickness: " + "; ".join(
            f"{name} {thickness:g} mm slices {spacing:g} mm apart"
            for name, thickness, spacing in slabs) + "."
    if qc_holdout:
        ordinal = f"{qc_holdout}" + ("th" if qc_holdout % 100 in (11, 12, 13) else
                                     {1: "st", 2: "nd", 3: "rd"}.get(qc_holdout % 10, "th"))
        text += (f" As a ground-truth-free check, every {ordinal} acquired slice of each "
                 "image was left out of a second reconstruction, by this method, JTV and clamped "
                 "cubic interpolation, each scored on the left-out slices.")
    if evaluation:
        text += (" Evaluation mode: the inputs were thick-slice acquisitions simulated from "
                 "isotropic images, and the outputs were scored against those originals.")
    return text


def software_versions() -> dict:
    """mcinr-bids' and torch's versions, for the sidecars."""
    software = {"mcinr-bids": __version__}
    try:
        import torch

        software["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return software


def sidecars(sources: list[str], bids_dir: str, skull_stripped: bool, mask_method: str,
             space: str, resolution: str, spatial_reference: str | None, settings: dict,
             fit_info: dict, bias_corrected: bool = True, method: str = "inr") -> dict:
    """The JSON sidecars of one subject's outputs.

    Returns ``{"image_metadata": [one dict per source], "mask_metadata": dict,
    "model_metadata": dict}``; ``method`` ``jtv``: ``settings`` is the ``[jtv]`` table and
    the record of the run is under ``JTV`` (no model).
    """
    uris = [bids_uri(path, bids_dir) for path in sources]
    common = {"Resolution": resolution, "SkullStripped": bool(skull_stripped)}
    if spatial_reference:
        common["SpatialReference"] = spatial_reference
    software = software_versions()
    fit = {
        # the grid levels the fit used (those finer than the data can inform are left out)
        "Parameters": {**settings, **{key: fit_info[key] for key in ("grid_cell_sizes_mm",)
                                      if fit_info.get(key) is not None}},
        "RandomSeed": settings.get("seed"),
        "Device": fit_info.get("device"),
        "Threads": fit_info.get("threads"),
        "EpochsRun": fit_info.get("epochs_run"),
        "SelectedEpoch": fit_info.get("selected_epoch"),
        "StopReason": fit_info.get("stop_reason"),
        "ResumedFromEpoch": fit_info.get("resumed_from_epoch"),
        "FitSeconds": fit_info.get("fit_seconds"),
        # which stages ran and why (mcinr_bids.methods.inr.recipe), as the fit decided them
        "Recipe": fit_info.get("recipe") or None,
        "SoftwareVersions": software,
    }
    if method == "unpaired":
        fit = {"Models": [os.path.basename(p) for p in settings.get("model_files", [])],
               "Device": fit_info.get("device"), "Seconds": fit_info.get("fit_seconds"),
               "SoftwareVersions": software}
        how = UNPAIRED_WORDS
    elif method == "jtv":
        fit = {"Parameters": settings, "Threads": fit_info.get("threads"),
               "Iterations": fit_info.get("epochs_run"),
               "NoiseSigma": fit_info.get("noise_sigma"),
               "FitSeconds": fit_info.get("fit_seconds"), "SoftwareVersions": software}
        how = jtv_words(settings)
    else:
        inr = inr_settings_of(settings)
        how = (f"{MODEL_WORDS[settings.get('model', 'split')]} ("
               + ", ".join(bids_stem(s) for s in sources) + "), "
               f"{forward_model_words(inr)}"
               + consistency_words(settings.get("consistency_steps", 0))
               + through_plane_words(inr.network_weight, inr.through_plane_steps)
               + blend_words(inr.blend_weight) + destripe_words(inr.destripe_on))
    record = {"jtv": "JTV", "unpaired": "Unpaired"}.get(method, "INR")
    images = []
    for index, uri in enumerate(uris):
        header = nib.load(sources[index])
        zooms = [round(float(z), 4) for z in voxel_sizes(header.affine)]
        images.append({
            **common,
            "Sources": [uri],
            "InputVoxelSize": zooms,
            "InputSliceAxis": thick_axis_letter(header.affine),
            "Description": (
                f"{bids_suffix(sources[index])} super-resolved to an isotropic grid by "
                f"{how}; in the input's intensity "
                + ("units after N4 bias-field correction." if bias_corrected
                   else "units (no bias-field correction).")),
            "RawSources": uris,
            record: fit,
        })
    mask = {**common, "Type": "Brain", "Sources": uris,
            "Description": f"Brain mask in {space}: {mask_method}, carried through the rigid "
                           "transforms and intersected over the inputs."}
    model = {"Sources": uris, "Description": "PyTorch checkpoint of the fitted INR "
             "(load with torch.load(weights_only=True) or "
              "mcinr_bids.methods.inr.load_checkpoint).",
             "INR": fit}
    return {"image_metadata": images, "mask_metadata": mask, "model_metadata": model}

"""BIDS inputs and derivative metadata: validation, selection with pybids, descriptions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__

CODE_URL = "https://github.com/mcinr-bids/mcinr-bids"
#: files the BIDS-Derivatives schema does not cover (bids-validator-deno reads this)
BIDSIGNORE = ("*_xfm.mat", "*_metrics.tsv", "*_metrics.json", "*_model.pt", "*_model.json",
              "*_history.tsv", "*.html", "**/figures", "**/log", "group_*")


class BIDSError(ValueError):
    """Bad command-line input or dataset: one message naming the path and the fix."""


def clean_labels(labels: list[str] | None, prefix: str) -> list[str]:
    """Strip ``sub-``/``ses-`` prefixes and refuse labels that could escape a folder."""
    cleaned = []
    for label in labels or []:
        value = label[len(prefix):] if label.startswith(prefix) else label
        if not value or not value.isalnum():
            raise BIDSError(f"label {label!r}: BIDS labels are letters and digits only (no '/', "
                            "'..', '_' or '-'); give e.g. 01 or sub-01.")
        cleaned.append(value)
    return cleaned


def check_folders(bids_dir: str, output_dir: str) -> tuple[Path, Path]:
    """The input must be a BIDS dataset; the output must lie outside it."""
    bids = Path(bids_dir).absolute()
    output = Path(output_dir).absolute()
    if not bids.is_dir():
        raise BIDSError(f"{bids}: no such folder; give the root of a BIDS dataset.")
    if not (bids / "dataset_description.json").is_file():
        raise BIDSError(f"{bids}: no dataset_description.json, so this is not the root of a "
                        "BIDS dataset; give the folder that holds dataset_description.json.")
    resolved_bids, resolved_output = bids.resolve(), output.resolve()
    if resolved_output == resolved_bids or resolved_bids in resolved_output.parents:
        raise BIDSError(f"{output}: the output folder is (inside) the input BIDS dataset "
                        f"{bids}; choose an output folder outside it, e.g. "
                        f"{bids.parent / 'derivatives' / 'mcinr-bids'}.")
    return bids, output


def run_bids_validator(bids_dir: str | Path) -> list[str]:
    """Run ``bids-validator-deno`` (offline); return its error messages (warnings dropped)."""
    executable = shutil.which("bids-validator-deno")
    if executable is None:
        raise BIDSError("bids-validator-deno is not installed; install it (pip install "
                        "bids-validator-deno) or pass --skip-bids-validation.")
    result = subprocess.run([executable, str(bids_dir), "--format", "json"],
                            capture_output=True, text=True, check=False)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise BIDSError(f"bids-validator-deno failed on {bids_dir}: "
                        f"{(result.stderr or result.stdout).strip()[:2000]}") from error
    errors = []
    for issue in report.get("issues", {}).get("issues", []):
        if issue.get("severity") == "error":
            where = issue.get("location", "")
            message = issue.get("issueMessage") or issue.get("subCode") or ""
            errors.append(f"{issue.get('code')}: {where} {message}".strip())
    return errors


@dataclass
class SubjectInputs:
    """The anatomical images of one subject (and session) selected for super-resolution."""

    subject: str
    session: str | None
    images: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def collect_inputs(layout, subjects: list[str], sessions: list[str], contrasts: list[str],
                   filters: dict | None = None) -> list[SubjectInputs]:
    """Every selected anatomical image, grouped by subject and session (pybids ``layout``).

    Each run or acquisition of a contrast is a separate input.  ``filters`` (from
    ``--bids-filter-file``) maps a contrast to extra pybids entities, e.g.
    ``{"T1w": {"acquisition": "axial"}}``.
    """
    filters = filters or {}
    groups = []
    for subject in subjects:
        subject_sessions = layout.get_sessions(subject=subject) or [None]
        if sessions:
            subject_sessions = [s for s in subject_sessions if s in sessions]
        for session in subject_sessions:
            images = []
            for contrast in contrasts:
                query = {"subject": subject, "datatype": "anat", "suffix": contrast,
                         "extension": [".nii", ".nii.gz"], "return_type": "file"}
                if session is not None:
                    query["session"] = session
                query.update(filters.get(contrast, {}))
                images.extend(sorted(layout.get(**query)))
            groups.append(SubjectInputs(subject, session, images))
    return groups


def choose_reference(images: list[str]) -> int:
    """Index of the reference image: the T1w with the finest in-plane resolution, else the first.

    In-plane resolution is the area of a voxel across its two thinnest axes.
    """
    def in_plane_area(path: str) -> float:
        zooms = sorted(float(z) for z in nib.load(path).header.get_zooms()[:3])
        return zooms[0] * zooms[1]

    t1w = [i for i, path in enumerate(images) if bids_suffix(path) == "T1w"]
    if not t1w:
        return 0
    return min(t1w, key=lambda i: (in_plane_area(images[i]), i))


def bids_suffix(path: str) -> str:
    """The BIDS suffix of a file name (``..._FLAIR.nii.gz`` -> ``FLAIR``)."""
    return Path(path).name.split(".")[0].rsplit("_", 1)[-1]


def bids_stem(path: str) -> str:
    """The file name without extension (``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``)."""
    return Path(path).name.split(".")[0]


def bids_uri(path: str, bids_dir: str | Path) -> str:
    """``bids::sub-01/anat/sub-01_T1w.nii.gz`` for a file of the input dataset."""
    return "bids::" + os.path.relpath(os.path.abspath(path), os.path.abspath(bids_dir))


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


def write_once(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; keep an existing file (many array jobs race)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    try:
        # os.link fails if another job won the race: the file is then complete already
        os.link(temporary, path)
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system: rename, last writer wins
        os.replace(temporary, path)
        return
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


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


def resolution_label(resolution: float) -> str:
    """BIDS ``res-`` label of an isotropic voxel size: 1 -> ``1``, 0.8 -> ``0p8``."""
    text = f"{resolution:g}"
    return text.replace(".", "p")


def sidecars(sources: list[str], bids_dir: str, skull_stripped: bool, mask_method: str,
             space: str, resolution: str, spatial_reference: str | None, settings: dict,
             fit_info: dict) -> dict:
    """The JSON sidecars of one subject's outputs.

    Returns ``{"image_metadata": [one dict per source], "mask_metadata": dict,
    "model_metadata": dict}``.
    """
    uris = [bids_uri(path, bids_dir) for path in sources]
    common = {"Resolution": resolution, "SkullStripped": bool(skull_stripped)}
    if spatial_reference:
        common["SpatialReference"] = spatial_reference
    software = {"mcinr-bids": __version__}
    try:
        import torch

        software["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
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
        "FitSeconds": fit_info.get("fit_seconds"),
        "SoftwareVersions": software,
    }
    images = []
    for index, uri in enumerate(uris):
        header = nib.load(sources[index])
        zooms = [round(float(z), 4) for z in header.header.get_zooms()[:3]]
        thickest = int(np.argmax(zooms))
        images.append({
            **common,
            "Sources": [uri],
            "InputVoxelSize": zooms,
            "InputSliceAxis": nib.aff2axcodes(header.affine)[thickest],
            "Description": (
                f"{bids_suffix(sources[index])} super-resolved to an isotropic grid by one "
                f"implicit neural representation fitted jointly to {len(uris)} images of this "
                "subject (" + ", ".join(bids_stem(s) for s in sources) + "), in the input's "
                "intensity units after N4 bias-field correction."),
            "RawSources": uris,
            "INR": fit,
        })
    mask = {**common, "Type": "Brain", "Sources": uris,
            "Description": f"Brain mask in {space}: {mask_method}, carried through the rigid "
                           "transforms and intersected over the inputs."}
    model = {"Sources": uris, "Description": "PyTorch checkpoint of the fitted INR "
             "(load with torch.load(weights_only=True) or mcinr_bids.inr.load_checkpoint).",
             "INR": fit}
    return {"image_metadata": images, "mask_metadata": mask, "model_metadata": model}


def parse_simulation_specs(specs: list[str]) -> dict[str, str]:
    """``["T1w:S", "FLAIR:A"]`` -> ``{"T1w": "S", "FLAIR": "A"}`` (axis letters R/L/A/P/S/I)."""
    parsed = {}
    for spec in specs:
        contrast, _, axis = spec.partition(":")
        if not contrast or axis.upper() not in ("R", "L", "A", "P", "S", "I"):
            raise BIDSError(f"--simulate-lowres {spec!r}: write CONTRAST:AXIS with AXIS one of "
                            "R, L, A, P, S, I (e.g. T1w:S FLAIR:A).")
        parsed[contrast] = axis.upper()
    return parsed


def write_simulated_dataset(groups: list[SubjectInputs], bids_dir: str, target_dir: str,
                            axes: dict[str, str], protocol: str = "decimate",
                            factor: int = 4) -> tuple[list[SubjectInputs], dict[str, str]]:
    """Simulate the anisotropic acquisitions of isotropic inputs as a BIDS dataset.

    Each image of a contrast in ``axes`` is decimated (or averaged through thick slices) by
    ``factor`` along that world axis (:mod:`mcinr_bids.simulate`) and written under
    ``target_dir`` with its original relative path and sidecar.  Returns the groups pointing
    at the simulated images and ``{simulated path: isotropic original}``.
    """
    from ..simulate import decimate, thick_slices, voxel_axis

    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    # a rerun with the same simulation keeps the files (and their timestamps), so that the
    # work folder's cached steps are reused; the marker is removed first and written last, so
    # an interrupted run never passes its old files off as the new simulation
    spec = json.dumps({"axes": axes, "protocol": protocol, "factor": factor}, sort_keys=True)
    marker = target / "simulation.json"
    unchanged = marker.exists() and marker.read_text() == spec
    marker.unlink(missing_ok=True)
    for name in ("dataset_description.json", "participants.tsv", "README"):
        if (Path(bids_dir) / name).exists() and not (unchanged and (target / name).exists()):
            shutil.copyfile(Path(bids_dir) / name, target / name)
    simulated_groups, originals = [], {}
    for group in groups:
        images = []
        for path in group.images:
            contrast = bids_suffix(path)
            if contrast not in axes:
                continue
            relative = os.path.relpath(path, bids_dir)
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            images.append(str(destination))
            originals[str(destination)] = path
            if unchanged and destination.exists() and \
                    destination.stat().st_mtime >= Path(path).stat().st_mtime:
                continue
            image = nib.load(path)
            data = np.asanyarray(image.dataobj, dtype=np.float32)
            axis = voxel_axis(image.affine, axes[contrast])
            if protocol == "thick":
                low, affine = thick_slices(data, image.affine, axis, factor)
            else:
                low, affine = decimate(data, image.affine, axis, factor)
            simulated = nib.Nifti1Image(low.astype(np.float32), affine)
            simulated.set_qform(affine, 1)
            simulated.set_sform(affine, 1)
            simulated.header.set_xyzt_units("mm", "sec")
            temporary = destination.with_name(".tmp-" + destination.name)
            simulated.to_filename(temporary)
            os.replace(temporary, destination)
            sidecar = Path(path.split(".")[0] + ".json")
            if sidecar.exists():
                shutil.copyfile(sidecar, str(destination).split(".")[0] + ".json")
        simulated_groups.append(SubjectInputs(group.subject, group.session, images))
    marker.write_text(spec)
    return simulated_groups, originals

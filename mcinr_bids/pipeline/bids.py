"""BIDS inputs and derivative metadata: validation, selection with pybids, descriptions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from mcinr_bids.core.geometry import has_thick_slices, thick_axis, voxel_sizes
from mcinr_bids.core.io import save_image


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


#: written into every work folder mcinr-bids uses: --clean-workdir empties only folders with it
WORK_MARKER = ".mcinr-bids-workdir"


def _within(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies below it (both resolved)."""
    return inner == outer or outer in inner.parents


def check_folders(bids_dir: str, output_dir: str, work_dir: str | None = None
                  ) -> tuple[Path, Path]:
    """The input must be a BIDS dataset; the output must lie outside it; the work folder must
    lie outside both (and hold neither), so that nothing in them is indexed or cleaned by
    mistake."""
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
    if work_dir is not None:
        work = Path(work_dir).absolute().resolve()
        for name, folder in (("input BIDS dataset", resolved_bids),
                             ("output folder", resolved_output)):
            if _within(work, folder) or _within(folder, work):
                raise BIDSError(
                    f"{work}: the work folder is, holds or lies inside the {name} {folder}; "
                    "choose a separate work folder (-w), e.g. node-local scratch such as "
                    "$SLURM_TMPDIR/work or /tmp/mcinr-work.")
    return bids, output


def prepare_work_dir(work_dir: str | Path, clean: bool) -> Path:
    """Create the work folder and mark it as mcinr-bids'; with ``clean``, first empty it, but
    only when it is marked (a folder mcinr-bids made) or already empty."""
    work = Path(work_dir)
    if clean and work.exists():
        if not work.is_dir():
            raise BIDSError(f"{work}: --clean-workdir: this is not a folder; give a work "
                            "folder with -w.")
        contents = list(work.iterdir())
        if contents and not (work / WORK_MARKER).is_file():
            raise BIDSError(
                f"{work}: --clean-workdir refuses to empty this folder: it holds files and is "
                f"not a mcinr-bids work folder (no {WORK_MARKER} file). Delete what it holds "
                "yourself, or give a new work folder with -w.")
        for path in contents:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).touch()
    return work


def find_executable(name: str) -> str | None:
    """``name`` on PATH, else beside the running interpreter (a virtual environment's bin/
    that was not activated), else ``None``."""
    found = shutil.which(name)
    if found is None:
        beside = Path(sys.executable).parent / name
        found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None
    return found


def run_bids_validator(bids_dir: str | Path) -> list[str]:
    """Run ``bids-validator-deno`` (offline); return its error messages (warnings dropped)."""
    executable = find_executable("bids-validator-deno")
    if executable is None:
        raise BIDSError("bids-validator-deno is not installed; install it (pip install "
                        "bids-validator-deno) or pass --skip-bids-validation.")
    # its module cache (~/.cache/deno by default) pointed at a folder that cannot be made: the
    # validator runs the same without it, and writes nothing outside the output and work
    # folders
    result = subprocess.run([executable, str(bids_dir), "--format", "json"],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "DENO_DIR": os.path.join(os.devnull, "deno")})
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
    #: image -> ``SliceThickness`` (mm) of its sidecar (BIDS inheritance applied), where given
    slice_thickness: dict[str, float] = field(default_factory=dict)

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
            thickness = {path: number(value) for path in images
                         if (value := layout.get_metadata(path).get("SliceThickness"))
                         is not None}
            groups.append(SubjectInputs(subject, session, images, thickness))
    return groups


def number(value) -> float:
    """A metadata value as a float; NaN when it is not a number (reported per subject later,
    so that one bad sidecar stops only its own subject)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def sidecar_slabs(images: list[str], thickness: dict[str, float]
                  ) -> list[tuple[str, float, float]]:
    """(BIDS stem, slice thickness, slice spacing) of each thick-slice image whose sidecar's
    ``SliceThickness`` differs from its slice spacing (gaps or overlap), for the methods text."""
    slabs = []
    for path in images:
        affine = nib.load(path).affine
        spacing = float(voxel_sizes(affine)[thick_axis(affine)])
        given = thickness.get(path)
        if given and has_thick_slices(affine) and abs(given - spacing) > 0.01 * spacing:
            slabs.append((bids_stem(path), float(given), spacing))
    return slabs


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


def find_lesion_mask(folder: str, subject: str, session: str | None) -> str | None:
    """The lesion mask of a subject/session in a BIDS-derivatives-like ``folder``
    (``sub-X[/ses-Y]/anat/sub-X[_ses-Y]*`` ending ``desc-lesion_mask.nii[.gz]`` or
    ``label-lesion_roi.nii[.gz]``); ``None`` when there is none.  Two candidates are an
    error: which one is meant cannot be guessed."""
    # absolute: a config file's relative folder must still be found by a node in its own folder
    anat = Path(folder).absolute() / f"sub-{subject}" / (f"ses-{session}" if session else "") \
        / "anat"
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    found = sorted(str(p) for p in anat.glob(f"{prefix}_*")
                   if re.search(r"(desc-lesion_mask|label-lesion_roi)\.nii(\.gz)?$", p.name))
    if len(found) > 1:
        raise BIDSError(f"{anat}: {len(found)} lesion masks for {prefix} ({', '.join(found)});"
                        " keep one.")
    return found[0] if found else None


def bids_suffix(path: str) -> str:
    """The BIDS suffix of a file name (``..._FLAIR.nii.gz`` -> ``FLAIR``)."""
    return Path(path).name.split(".")[0].rsplit("_", 1)[-1]


def bids_stem(path: str) -> str:
    """The file name without extension (``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``)."""
    return Path(path).name.split(".")[0]


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar beside an image (``a.b/sub-01_T1w.nii.gz`` -> ``a.b/sub-01_T1w.json``;
    only the file name's extension is replaced, never a dot in a folder name)."""
    return Path(path).with_name(bids_stem(path) + ".json")


def bids_uri(path: str, bids_dir: str | Path) -> str:
    """``bids::sub-01/anat/sub-01_T1w.nii.gz`` for a file of the input dataset."""
    return "bids::" + os.path.relpath(os.path.abspath(path), os.path.abspath(bids_dir))


def resolution_label(resolution: float) -> str:
    """BIDS ``res-`` label of an isotropic voxel size: 1 -> ``1``, 0.8 -> ``0p8``."""
    text = f"{resolution:g}"
    return text.replace(".", "p")


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


def write_simulated_image(image, destination: Path, axis: int, protocol: str,
                          factor: int) -> None:
    """``image`` (nibabel) decimated or averaged through thick slices along voxel ``axis``,
    written to ``destination`` (float32, qform = sform)."""
    from mcinr_bids.quality.simulation import decimate, thick_slices

    data = np.asanyarray(image.dataobj, dtype=np.float32)
    if protocol == "thick":
        low, affine = thick_slices(data, image.affine, axis, factor)
    else:
        low, affine = decimate(data, image.affine, axis, factor)
    simulated = nib.Nifti1Image(low.astype(np.float32), affine)
    simulated.set_qform(affine, 1)
    simulated.set_sform(affine, 1)
    simulated.header.set_xyzt_units("mm", "sec")
    save_image(simulated, destination)


def write_simulated_dataset(groups: list[SubjectInputs], bids_dir: str, target_dir: str,
                            axes: dict[str, str], protocol: str = "decimate",
                            factor: int = 4) -> tuple[list[SubjectInputs], dict[str, str]]:
    """Simulate the anisotropic acquisitions of isotropic inputs as a BIDS dataset.

    Each image of a contrast in ``axes`` is decimated (or averaged through thick slices) by
    ``factor`` along that world axis (:mod:`mcinr_bids.quality.simulation`) and written under
    ``target_dir`` with its original relative path and sidecar, whose ``SliceThickness`` says
    what the simulated slices are (their slice profile).  Returns the groups pointing at the
    simulated images (with their slice thickness) and ``{simulated path: isotropic original}``.
    """
    from mcinr_bids.core.geometry import voxel_axis

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
        images, thickness = [], {}
        for path in group.images:
            contrast = bids_suffix(path)
            if contrast not in axes:
                continue
            relative = os.path.relpath(path, bids_dir)
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            images.append(str(destination))
            originals[str(destination)] = path
            image = nib.load(path)
            axis = voxel_axis(image.affine, axes[contrast])
            # the simulated slices' thickness (their slice profile, core.slices): thick slabs
            # span ``factor`` voxels; decimated slices keep one, thin slices with gaps
            thickness[str(destination)] = float(voxel_sizes(image.affine)[axis]) * (
                factor if protocol == "thick" else 1)
            if unchanged and destination.exists() and \
                    destination.stat().st_mtime >= Path(path).stat().st_mtime:
                continue
            write_simulated_image(image, destination, axis, protocol, factor)
            metadata = (json.loads(sidecar_path(path).read_text())
                        if sidecar_path(path).exists() else {})
            metadata["SliceThickness"] = thickness[str(destination)]
            sidecar_path(destination).write_text(json.dumps(metadata, indent=2))
        simulated_groups.append(SubjectInputs(group.subject, group.session, images, thickness))
    marker.write_text(spec)
    return simulated_groups, originals

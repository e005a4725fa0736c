"""Which subjects can run: every input image readable to its last byte and usable, and the
images of a session overlapping, checked before anything of a subject runs (a bad image stops
only its own subject/session)."""

from __future__ import annotations

import json
import logging


class UsageError(ValueError):
    """Bad arguments or input data, reported as one message with exit code 2."""


#: query entities a filter file may not change: they would mix subjects or contrasts, or make
#: two groups write the same derivative
PROTECTED_FILTER_KEYS = ("subject", "session", "suffix", "datatype", "extension",
                         "return_type", "scope", "target")


def load_filters(path: str | None) -> dict:
    """The ``--bids-filter-file``: contrast -> pybids entities, checked (one message naming
    the file and the fix)."""
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
    for contrast, entities in filters.items():
        protected = sorted(set(entities) & set(PROTECTED_FILTER_KEYS))
        if protected:
            raise UsageError(
                f"{path}: the filter of {contrast} sets {', '.join(protected)}, which the app "
                "chooses itself (use --participant-label, --session-label and --contrasts); "
                "filter on other entities, e.g. acquisition, run or reconstruction.")
    return filters


def image_problem(path: str, slice_thickness: float | None = None) -> str | None:
    """What makes an input image unusable (unreadable, not 3D, NaN/inf, all zeros, constant,
    singular affine, a slice thickness (its sidecar's, BIDS inheritance applied: given) that
    does not fit its slices), as one message naming the file and the fix; ``None`` when usable."""
    from mcinr_bids.core.images import load_volume
    from mcinr_bids.core.slices import check_slice_thickness
    from mcinr_bids.core.volumes import InputError

    try:
        volume = load_volume(path)
        volume.slice_thickness_mm = slice_thickness
        check_slice_thickness(volume)
    except InputError as error:
        return str(error)
    return None


def overlap_problem(paths: list[str]) -> str | None:
    """An image whose field of view misses every other image of its session (a header
    hundreds of mm off: no registration can start there), as one message; else ``None``."""
    import nibabel as nib
    import numpy as np

    from mcinr_bids.core.volumes import InputError, Volume, check_overlap

    headers = [nib.load(path) for path in paths]
    try:  # the headers alone: zero-size stand-ins for the data
        check_overlap([Volume(np.broadcast_to(np.float32(0), h.shape[:3]), h.affine, path=path)
                       for h, path in zip(headers, paths)])
    except InputError as error:
        return str(error)
    return None


def split_by_image_content(groups: list, logger: logging.Logger) -> tuple[list, list]:
    """Groups whose every image is usable and overlaps the others, and the others (each logged
    once, with the problem of its first bad image): a bad image stops only its own
    subject/session, before anything of it runs."""
    good, bad = [], []
    for group in groups:
        problem = next(filter(None, (image_problem(path, group.slice_thickness.get(path))
                                     for path in group.images)), None)
        problem = problem or overlap_problem(group.images)
        if problem is None:
            good.append(group)
        else:
            bad.append(group)
            logger.error("%s: skipped: %s", group.label, problem)
    return good, bad


def earlier_outputs(output_dir: str, group, space_label: str, resolution: str, desc: str
                    ) -> list[str]:
    """The subject/session's output images that this run will not write: those of an earlier
    run with another output space, resolution or method (``space-``, ``res-``, ``desc-``)."""
    import re
    from pathlib import Path

    folder = Path(output_dir) / f"sub-{group.subject}" / (
        f"ses-{group.session}" if group.session else "") / "anat"
    kept = f"_space-{space_label}_res-{resolution}_desc-{desc}_"
    found = []
    for path in sorted(folder.glob(f"{group.label}_*_desc-*.nii.gz")):
        if re.search(r"_desc-(superres|jtv|unpaired)_", path.name) and kept not in path.name:
            found.append(path.name)
    return found


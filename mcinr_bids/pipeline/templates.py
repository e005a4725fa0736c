"""Output-space templates, found on disk only: nothing is downloaded at run time.

TemplateFlow is used from a pre-populated ``TEMPLATEFLOW_HOME``.  An empty TemplateFlow home holds
0-byte placeholders that TemplateFlow would try to download, so files are checked for real
content first.  Without a local MNI152NLin2009cAsym, the MNI152 template that nilearn ships is
used, and named for what it is: ``MNI152NLin2009aSym`` (T1 only, skull-stripped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from mcinr_bids.core.io import save_image


class TemplateError(RuntimeError):
    """A requested output space has no usable local template."""


@dataclass
class OutputSpace:
    """Where the outputs go: a template (T1w + brain mask files) or the native space."""

    name: str
    t1w: str | None = None
    mask: str | None = None
    source: str = "native"  # templateflow | nilearn | user | native
    templateflow: bool = False

    @property
    def is_template(self) -> bool:
        return self.t1w is not None


def templateflow_home() -> Path:
    """``TEMPLATEFLOW_HOME`` as TemplateFlow resolves it (default ``~/.cache/templateflow``)."""
    home = os.environ.get("TEMPLATEFLOW_HOME")
    return Path(home) if home else Path.home() / ".cache" / "templateflow"


def _real_file(path: Path) -> bool:
    """True for a readable file with content (not a 0-byte placeholder or a broken link)."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def local_template(name: str, home: Path | None = None) -> tuple[str, str] | None:
    """(T1w, brain mask) paths of a template at 1 mm in TemplateFlow's layout, if present."""
    folder = (home or templateflow_home()) / f"tpl-{name}"
    for resolution in ("_res-01", "_res-1", ""):
        t1w = folder / f"tpl-{name}{resolution}_T1w.nii.gz"
        mask = folder / f"tpl-{name}{resolution}_desc-brain_mask.nii.gz"
        if _real_file(t1w) and _real_file(mask):
            return str(t1w), str(mask)
    return None


def nilearn_template(cache_dir: str) -> tuple[str, str]:
    """Write nilearn's MNI152NLin2009aSym 1 mm T1 and brain mask into ``cache_dir``."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    os.makedirs(cache_dir, exist_ok=True)
    t1w = os.path.join(cache_dir, "tpl-MNI152NLin2009aSym_res-01_T1w.nii.gz")
    mask = os.path.join(cache_dir, "tpl-MNI152NLin2009aSym_res-01_desc-brain_mask.nii.gz")
    for path, image in ((t1w, load_mni152_template(resolution=1)),
                        (mask, load_mni152_brain_mask(resolution=1))):
        if not _real_file(Path(path)):
            data = np.asanyarray(image.dataobj).astype(np.float32 if path == t1w else np.uint8)
            save_image(nib.Nifti1Image(data, image.affine), path)
    return t1w, mask


def resolve_output_space(requested: str, cache_dir: str) -> OutputSpace:
    """Template files of ``requested``: ``MNI152NLin2009cAsym``, ``SRI24`` or ``native``."""
    if requested == "native":
        return OutputSpace(name="native")
    if requested == "SRI24":
        found = local_template("SRI24")
        if found is None:
            raise TemplateError(
                f"--output-space SRI24: no tpl-SRI24 folder with tpl-SRI24_res-01_T1w.nii.gz and "
                f"tpl-SRI24_res-01_desc-brain_mask.nii.gz in TEMPLATEFLOW_HOME "
                f"({templateflow_home()}); put the SRI24 atlas there (see README, 'Output "
                "spaces') or choose another --output-space.")
        return OutputSpace("SRI24", *found, source="user", templateflow=False)
    if requested == "MNI152NLin2009cAsym":
        found = local_template(requested)
        if found is not None:
            return OutputSpace(requested, *found, source="templateflow", templateflow=True)
        return OutputSpace("MNI152NLin2009aSym", *nilearn_template(cache_dir), source="nilearn",
                           templateflow=True)
    raise TemplateError(f"unknown output space {requested!r}")

"""What the benchmark scripts share (they run as scripts: ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import os
from pathlib import Path


def real_data_folder() -> Path:
    """The shared real cases: ``$MCINR_REAL_DATA``, else ``../shared/data/real`` beside the
    checkout."""
    here = Path(__file__).resolve().parent
    return Path(os.environ.get("MCINR_REAL_DATA", here.parent.parent / "shared" / "data" /
                               "real"))

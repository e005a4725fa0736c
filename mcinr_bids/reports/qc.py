"""One quality-control line per subject/session for the group level, from the derivatives only.

Each line says PASS or WARN for the registration checks
(:mod:`mcinr_bids.pipeline.registration_qc`),
the ``--qc-holdout`` gain's sign where it ran, the re-simulation residual (an image whose
re-simulation PSNR is a low outlier of its contrast) and the fit's stop reason (a fit cut by its
time limit); ``qc`` is WARN when any of them is.  The group report lists WARN lines first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from mcinr_bids.pipeline.registration_qc import (
    checks_from_rows,
    describe_checks,
    registration_status,
)

QC_COLUMNS = ("participant_id", "session_id", "method", "qc", "registration",
              "registration_detail", "holdout", "residual", "stop_reason", "reasons")
#: stop reasons that call for a look: the fit did not end on its own terms
WARN_STOP_REASONS = ("time limit",)

QC_DICTIONARY = {
    "qc": {"Description": "WARN when any of the checks of this line is WARN, else PASS."},
    "registration": {"Description": "PASS or WARN: the reference's brain on the template's "
                                    "brain mask (Dice, centre distance, share outside the grid) "
                                    "and each image's foreground on the reference's "
                                    "(thresholds in the documentation)."},
    "registration_detail": {"Description": "The registration numbers in words."},
    "holdout": {"Description": "--qc-holdout: PASS when the output beats clamped cubic on the "
                               "left-out slices of every image, WARN when not; n/a without the "
                               "check."},
    "residual": {"Description": "WARN when an image's re-simulation PSNR is a low outlier of "
                                "its contrast in this cohort (robust z-score below -3)."},
    "stop_reason": {"Description": "Why the fit stopped (WARN: time limit)."},
    "reasons": {"Description": "Every reason for WARN, separated by '; '."},
}


def _stop_reason(metrics_file: Path) -> str:
    """The fit's stop reason from an output sidecar beside the metrics table ('n/a': none)."""
    unit = metrics_file.name.split("_desc-")[0]
    for sidecar in sorted(metrics_file.parent.glob(f"{unit}_*.json")):
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        for key in ("INR", "JTV"):
            if isinstance(record.get(key), dict) and record[key].get("StopReason"):
                return str(record[key]["StopReason"])
    return "n/a"


def subject_line(metrics_file: Path, method: str, low_outliers: set[str]) -> dict:
    """The QC line of one participant metrics table (``low_outliers``: the cohort's images
    whose re-simulation PSNR is a low outlier)."""
    long = pd.read_csv(metrics_file, sep="\t", na_values="n/a", keep_default_na=False)
    if "method" in long:
        long = long[long["method"].isna()]
    template, images = checks_from_rows(long.to_dict("records"))
    reasons = registration_status(template, images)
    gains = long.loc[long["measure"] == "holdout_gain", "value"].astype(float)
    holdout = "n/a" if gains.empty else ("WARN" if (gains <= 0).any() else "PASS")
    if holdout == "WARN":
        reasons.append(f"--qc-holdout: not above cubic on {int((gains <= 0).sum())} image(s)")
    outliers = sorted(set(long["image"].dropna().astype(str)) & low_outliers)
    reasons += [f"{name}: re-simulation PSNR a low outlier" for name in outliers]
    stop = _stop_reason(metrics_file)
    if stop in WARN_STOP_REASONS:
        reasons.append(f"the fit stopped at its {stop}")
    subject = re.search(r"sub-([a-zA-Z0-9]+)", metrics_file.name).group(1)
    session = re.search(r"_ses-([a-zA-Z0-9]+)", metrics_file.name)
    return {"participant_id": f"sub-{subject}",
            "session_id": f"ses-{session.group(1)}" if session else "n/a", "method": method,
            "qc": "WARN" if reasons else "PASS",
            "registration": "n/a" if template is None and not images else (
                "WARN" if registration_status(template, images) else "PASS"),
            "registration_detail": describe_checks(template, images), "holdout": holdout,
            "residual": "WARN" if outliers else "PASS", "stop_reason": stop,
            "reasons": "; ".join(reasons)}


def qc_table(files: list[tuple[Path, str]], outliers: pd.DataFrame) -> pd.DataFrame:
    """One line per (metrics file, method), WARN first (then by subject and session)."""
    low = outliers[(outliers["measure"] == "resimulation_psnr") & (outliers["robust_z"] < 0)]
    low_outliers = set(low["image"].astype(str))
    table = pd.DataFrame([subject_line(path, method, low_outliers) for path, method in files],
                         columns=list(QC_COLUMNS))
    order = table["qc"].ne("WARN")
    return table.assign(_order=order).sort_values(
        ["_order", "participant_id", "session_id"]).drop(columns="_order").reset_index(
        drop=True)

"""Group level: aggregate the participants' metrics from the derivatives only.

Writes ``group_desc-superres_metrics.tsv`` (+ ``.json``), one row per subject/session/input,
``group_desc-qc_metrics.tsv`` (+ ``.json``), one quality-control line per subject/session
(:mod:`mcinr_bids.reports.qc`), and ``group_report.html``: the QC lines (WARN first), the table,
each metric's distribution and the outliers (robust z-score > 3 on re-simulation PSNR or mutual
information), linked to their ``sub-X.html``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mcinr_bids.config import OUTPUT_DESC  # noqa: E402
from mcinr_bids.reports.participant import STYLE  # noqa: E402
from mcinr_bids.reports.qc import QC_DICTIONARY, qc_table  # noqa: E402

MEASURES = ("resimulation_rmse", "resimulation_psnr", "mutual_information")
#: the --qc-holdout columns, where a participant ran the check
HOLDOUT_MEASURES = ("holdout_psnr_inr", "holdout_psnr_jtv", "holdout_psnr_cubic", "holdout_gain")
#: the registration checks' columns (template ones on the reference image's row)
REGISTRATION_MEASURES = ("registration_template_dice", "registration_template_centre_distance_mm",
                         "registration_template_outside_fraction", "registration_image_dice")
OUTLIER_MEASURES = ("resimulation_psnr", "mutual_information")
OUTLIER_Z = 3.0

GROUP_DICTIONARY = {
    "participant_id": {"Description": "Subject label (sub-<label>)."},
    "session_id": {"Description": "Session label (ses-<label>); n/a without sessions."},
    "image": {"Description": "The input image (file name stem)."},
    "contrast": {"Description": "BIDS suffix of the input (T1w, FLAIR, ...)."},
    "method": {"Description": "The participant-level method that made the outputs: inr "
                              "(desc-superres) or jtv (desc-jtv)."},
    "resimulation_rmse": {"Description": "RMSE between the model's prediction at the input's "
                                         "voxels and the input, inside the brain mask.",
                          "Units": "input intensity units"},
    "resimulation_psnr": {"Description": "PSNR of the same comparison (peak = the input's "
                                         "in-mask range).", "Units": "dB"},
    "mutual_information": {"Description": "Mean mutual information (32-bin histogram) between "
                                          "this predicted contrast and each other one, inside "
                                          "the output brain mask.", "Units": "nats"},
    **{f"holdout_psnr_{method}": {
        "Description": f"--qc-holdout: PSNR of {text} made without every K-th acquired slice, "
                       "re-simulated at those slices, against the acquired slices (inside the "
                       "brain mask; n/a without the check).", "Units": "dB"}
       for method, text in (("inr", "the INR output (consistency step and JTV blend)"),
                            ("jtv", "the JTV reconstruction"),
                            ("cubic", "clamped cubic interpolation"))},
    "registration_template_dice": {"Description": "Reference image's row: Dice of its brain "
                                                  "mask carried onto the template with the "
                                                  "template's brain mask (template spaces)."},
    "registration_template_centre_distance_mm": {
        "Description": "Reference image's row: distance between the registered brain's centre "
                       "and the template brain's.", "Units": "mm"},
    "registration_template_outside_fraction": {
        "Description": "Reference image's row: share of the registered brain outside the "
                       "template's grid (above 0.01 the subject stops)."},
    "registration_image_dice": {"Description": "Dice of this image's foreground carried onto "
                                               "the reference's foreground (other images)."},
    "holdout_gain": {"Description": "--qc-holdout: the method's hold-out PSNR minus clamped "
                                    "cubic's (> 0: better than interpolation on this subject's "
                                    "own slices).", "Units": "dB"},
}


class NoParticipantsError(ValueError):
    """The output folder holds no participant-level results."""


def read_participant_table(path: Path) -> pd.DataFrame:
    """One subject/session's long metrics table as one row per input image."""
    long = pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)
    if "method" in long:
        long = long[long["method"].isna()]  # evaluation rows go to the Table-1 summary
    rows = {}
    for record in long.itertuples(index=False):
        if record.measure == "mutual_information":
            for image in (record.image, record.other_image):
                rows.setdefault(image, {}).setdefault("_mi", []).append(float(record.value))
        else:
            rows.setdefault(record.image, {})[record.measure] = float(record.value)
    table = []
    for image, values in rows.items():
        mutual = values.pop("_mi", [])
        values["mutual_information"] = float(np.mean(mutual)) if mutual else np.nan
        table.append({"image": image, "contrast": image.rsplit("_", 1)[-1], **values})
    frame = pd.DataFrame(table)
    subject = re.search(r"sub-([a-zA-Z0-9]+)", path.name).group(1)
    session = re.search(r"_ses-([a-zA-Z0-9]+)", path.name)
    frame.insert(0, "session_id", f"ses-{session.group(1)}" if session else "n/a")
    frame.insert(0, "participant_id", f"sub-{subject}")
    return frame


def robust_z(values: pd.Series) -> pd.Series:
    """(x - median) / (1.4826 MAD); 0 where the spread is 0."""
    median = values.median()
    spread = 1.4826 * (values - median).abs().median()
    if not np.isfinite(spread) or spread == 0:
        return pd.Series(np.zeros(len(values)), index=values.index)
    return (values - median) / spread


def flag_outliers(group: pd.DataFrame) -> pd.DataFrame:
    """Rows whose robust z-score (within its contrast and method) exceeds 3 on PSNR or MI."""
    flagged = []
    keys = ["contrast", "method"] if "method" in group else ["contrast"]
    for _, rows in group.groupby(keys):
        for measure in OUTLIER_MEASURES:
            z = robust_z(rows[measure])
            for index in rows.index[z.abs() > OUTLIER_Z]:
                flagged.append({**group.loc[index, ["participant_id", "session_id", "image",
                                                     "contrast"]].to_dict(),
                                "measure": measure, "value": group.loc[index, measure],
                                "robust_z": round(float(z[index]), 2)})
    return pd.DataFrame(flagged, columns=["participant_id", "session_id", "image", "contrast",
                                          "measure", "value", "robust_z"])


def readable_tables(files: list[Path], warn) -> tuple[list[Path], list[pd.DataFrame]]:
    """The participant metrics tables that can be read, and their per-image tables; each
    other one is named through ``warn(message)`` and left out (one damaged file never stops
    the group level)."""
    kept, tables = [], []
    for path in files:
        try:
            table = read_participant_table(path)
            if table.empty or not {"image", "contrast"} <= set(table):
                raise ValueError("no rows")
        except Exception as error:  # noqa: BLE001 - pandas raises many kinds for a bad file
            warn(f"{path}: not a readable participant metrics table ({type(error).__name__}: "
                 f"{error}); left out of the group results. Rerun that participant, or remove "
                 "the file.")
            continue
        kept.append(path)
        tables.append(table)
    return kept, tables


def aggregate_metrics(output_dir: str | Path, participants: list[str] | None = None,
                      warn=None) -> Path:
    """Gather every ``sub-*_desc-superres_metrics.tsv`` (INR), ``sub-*_desc-jtv_metrics.tsv``
    (``--method jtv``) and ``sub-*_desc-unpaired_metrics.tsv`` (``--method unpaired``) into
    the group table (column ``method``) and report.

    Reads only the derivatives; a damaged table is named through ``warn(message)`` and left
    out; returns the path of the group TSV.
    """
    output = Path(output_dir)
    files = [path for desc in OUTPUT_DESC.values()
             for path in sorted(output.glob(f"sub-*/**/anat/sub-*_desc-{desc}_metrics.tsv"))]
    if participants:
        files = [f for f in files if f.name.split("_")[0][4:] in participants]
    if not files:
        raise NoParticipantsError(
            f"{output}: no participant results (sub-*/anat/*_desc-superres_metrics.tsv); run "
            "the participant level first, with this folder as output_dir.")
    methods = {f"desc-{desc}": method for method, desc in OUTPUT_DESC.items()}
    files, tables = readable_tables(files, warn or (lambda message: None))
    if not files:
        raise NoParticipantsError(f"{output}: no readable participant metrics table; rerun "
                                  "the participant level.")
    group = pd.concat([table.assign(method=methods[f.name.split("_")[-2]])
                       for f, table in zip(files, tables)], ignore_index=True)
    evaluation = evaluation_summary(files)
    group = group[["participant_id", "session_id", "image", "contrast", "method", *MEASURES,
                   *[m for m in REGISTRATION_MEASURES + HOLDOUT_MEASURES if m in group]]]
    target = output / "group_desc-superres_metrics.tsv"
    temporary = target.with_suffix(".tmp")
    group.to_csv(temporary, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    temporary.replace(target)
    target.with_suffix(".json").write_text(json.dumps(GROUP_DICTIONARY, indent=2) + "\n")
    qc = qc_table([(f, methods[f.name.split("_")[-2]]) for f in files], flag_outliers(group))
    qc_target = output / "group_desc-qc_metrics.tsv"
    qc.to_csv(qc_target.with_suffix(".tmp"), sep="\t", index=False, na_rep="n/a")
    qc_target.with_suffix(".tmp").replace(qc_target)
    qc_target.with_suffix(".json").write_text(json.dumps(QC_DICTIONARY, indent=2) + "\n")
    if evaluation is not None:
        evaluation.to_csv(output / "group_desc-evaluation_metrics.tsv", sep="\t", index=False,
                          na_rep="n/a")
    write_group_report(group, output, evaluation, qc)
    return target


TABLE_MEASURES = ("psnr_strict", "ssim_strict", "psnr_paper", "ssim_paper", "psnr_lesion",
                  "ssim_lesion", "banding_index", "psnr_acquired", "psnr_unacquired")


def evaluation_summary(files: list[Path]) -> pd.DataFrame | None:
    """Table 1 of the paper over the cohort: mean ± sd per method and contrast, and the paired
    difference of each INR against clamped cubic (mean ± sd over subjects/sessions).

    ``None`` when no participant ran the evaluation mode.
    """
    rows = []
    for path in files:
        long = pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)
        if "method" not in long:
            continue
        long = long[long["method"].notna() & long["measure"].isin(TABLE_MEASURES)]
        if long.empty:  # a participant without the evaluation mode
            continue
        long = long.assign(unit=path.name.split("_desc-")[0],
                           contrast=long["image"].str.rsplit("_", n=1).str[-1])
        rows.append(long)
    if not rows:
        return None
    scores = pd.concat(rows, ignore_index=True)
    scores["value"] = scores["value"].astype(float)
    table = []
    for (contrast, measure), part in scores.groupby(["contrast", "measure"]):
        wide = part.pivot_table(index="unit", columns="method", values="value")
        for method in wide.columns:
            entry = {"contrast": contrast, "measure": measure, "method": method,
                     "n": int(wide[method].notna().sum()), "mean": wide[method].mean(),
                     "sd": wide[method].std(ddof=1)}
            if method.startswith("inr") and "cubic-clamped" in wide:
                difference = wide[method] - wide["cubic-clamped"]
                entry.update(difference_vs_cubic_mean=difference.mean(),
                             difference_vs_cubic_sd=difference.std(ddof=1))
            table.append(entry)
    return pd.DataFrame(table)


def distribution_figure(group: pd.DataFrame, out_file: Path) -> Path:
    """One panel per metric: each contrast's values (points) over a box plot."""
    contrasts = sorted(group["contrast"].unique())
    figure, axes = plt.subplots(1, len(MEASURES), figsize=(5 * len(MEASURES), 4))
    rng = np.random.default_rng(0)
    for axis, measure in zip(axes, MEASURES):
        data = [group.loc[group["contrast"] == c, measure].dropna().to_numpy()
                for c in contrasts]
        axis.boxplot(data, showfliers=False)
        axis.set_xticks(range(1, len(contrasts) + 1), contrasts)
        for position, values in enumerate(data, start=1):
            axis.plot(position + rng.uniform(-0.15, 0.15, len(values)), values, ".",
                      alpha=0.5, markersize=3)
        axis.set_title(measure.replace("_", " "))
    figure.tight_layout()
    figure.savefig(out_file, format="svg")
    plt.close(figure)
    return out_file


def write_group_report(group: pd.DataFrame, output: Path,
                       evaluation: pd.DataFrame | None = None,
                       qc: pd.DataFrame | None = None) -> Path:
    """``group_report.html``: one QC line per subject (WARN first), distributions, outliers
    and the table, linked to the subjects' pages."""
    figures = output / "group_figures"
    figures.mkdir(exist_ok=True)
    distribution_figure(group, figures / "group_desc-distribution_metrics.svg")
    outliers = flag_outliers(group)

    def link(subject: str) -> str:
        page = f"{subject}.html"
        if (output / page).exists():
            return f'<a href="{page}">{html.escape(subject)}</a>'
        return html.escape(subject)

    shown = group.copy()
    shown["participant_id"] = shown["participant_id"].map(link)
    outliers_shown = outliers.copy()
    outliers_shown["participant_id"] = outliers_shown["participant_id"].map(link)
    outlier_html = (outliers_shown.to_html(index=False, escape=False, na_rep="n/a")
                    if len(outliers) else "<p>No outliers.</p>")
    qc_html = ""
    if qc is not None and len(qc):
        warned = int((qc["qc"] == "WARN").sum())
        qc_shown = qc.drop(columns=["method"] if qc["method"].nunique() == 1 else []).copy()
        qc_shown["participant_id"] = qc_shown["participant_id"].map(link)
        for column in ("qc", "registration", "holdout", "residual"):
            qc_shown[column] = qc_shown[column].map(
                lambda value: f'<strong class="{value.lower()}">{value}</strong>'
                if value in ("PASS", "WARN") else html.escape(str(value)))
        qc_shown["reasons"] = qc_shown["reasons"].map(lambda value: html.escape(str(value)))
        qc_html = ("<h2>Quality control: one line per subject</h2>"
                   f"<p>{warned} of {len(qc)} subject/session(s) to look at (WARN, listed "
                   "first): registration checks, --qc-holdout gain, re-simulation residual, the "
                   "fit's stop reason. Also in group_desc-qc_metrics.tsv.</p>"
                   + qc_shown.to_html(index=False, escape=False, na_rep="n/a"))
    evaluation_html = ""
    if "holdout_gain" in group and group["holdout_gain"].notna().any():
        gains = group["holdout_gain"].dropna()
        evaluation_html += (
            "<h2>Ground-truth-free check (--qc-holdout)</h2>"
            f"<p>On the acquired slices left out of a second reconstruction, the output beats "
            f"clamped cubic interpolation on {int((gains > 0).sum())} of {len(gains)} images "
            f"(gain {gains.mean():+.2f} &plusmn; {gains.std(ddof=1) if len(gains) > 1 else 0:.2f}"
            " dB); per image in the table below (holdout_* columns).</p>")
    if evaluation is not None:
        evaluation_html += (
            "<h2>Evaluation against the isotropic originals (Table 1 of the paper)</h2>"
            "<p>Mean and standard deviation over subjects/sessions; the difference of each INR "
            "against clamped cubic splines is paired per subject. Strict convention: both "
            "images scaled by the original's in-mask range, scored inside the mask.</p>"
            + evaluation.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3f}"))
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>mcinr-bids group report</title><style>{STYLE}</style></head><body>"
        f"<h1>mcinr-bids group report</h1><p>{group['participant_id'].nunique()} subjects, "
        f"{len(group)} super-resolved images.</p>{qc_html}"
        "<h2>Distributions</h2>"
        '<img src="group_figures/group_desc-distribution_metrics.svg" alt="distributions">'
        f"<h2>Outliers (robust z-score &gt; {OUTLIER_Z:g} within a contrast)</h2>"
        f"{outlier_html}{evaluation_html}<h2>All subjects</h2>"
        + shown.to_html(index=False, escape=False, na_rep="n/a",
                        float_format=lambda v: f"{v:.4g}")
        + "</body></html>")
    target = output / "group_report.html"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(page)
    temporary.replace(target)
    return target

"""The participant report: one HTML page per subject, figures (SVG) under ``sub-X/figures/``.

Figures are niworkflows/nireports-style reportlets (flickering SVG, CSS only) and matplotlib
plots; the page uses no JavaScript, no CDN scripts and no web fonts, so it renders offline.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mcinr_bids import __version__  # noqa: E402
from mcinr_bids.config import OUTPUT_DESC  # noqa: E402
from mcinr_bids.core.geometry import thick_axis  # noqa: E402
from mcinr_bids.core.interpolation import sample_on_grid
from mcinr_bids.pipeline.anatomical import itk_file_to_ras
from mcinr_bids.pipeline.registration_qc import (  # noqa: E402
    IMAGE_DICE_MIN,
    TEMPLATE_CENTRE_MAX_MM,
    TEMPLATE_DICE_MIN,
    checks_from_rows,
    describe_checks,
    registration_status,
)

CITATION = ("McGinnis J, Shit S, Li HB, Sideri-Lampretsa V, Graf R, Dannecker M, Pan J, "
            "Stolt-Ansó N, Mühlau M, Kirschke JS, Rueckert D, Wiestler B. Multi-contrast MRI "
            "super-resolution via implicit neural representations. MICCAI 2023 "
            "(arXiv:2303.15065).")

STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 1em auto; padding: 0 1em;
       color: #222; }
h1 { border-bottom: 2px solid #446; } h2 { color: #446; margin-top: 2em; }
img { width: 100%; height: auto; border: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { border: 1px solid #bbb; padding: 2px 8px; }
.note { color: #555; font-size: 90%; }
.pass { color: #161; } .warn { color: #b00; }
"""


def _flicker_views(images: list[tuple[nib.Nifti1Image, str]], mask: nib.Nifti1Image,
                   out_file: str, contour: nib.Nifti1Image | None = None) -> str:
    """A niworkflows-style flicker SVG: the first image fades into the second (CSS only)."""
    from nireports.reportlets.mosaic import plot_registration
    from nireports.reportlets.utils import compose_view, cuts_from_bbox

    cuts = cuts_from_bbox(mask, cuts=5)
    inside = np.asanyarray(mask.dataobj) > 0
    panels = []
    for index, (image, label) in enumerate(images):
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        values = data[inside] if inside.any() and inside.shape == data.shape else data
        low, high = np.percentile(values, [0.5, 99.5])
        panels.append(plot_registration(
            image, f"panel-{index}", plot_params={"vmin": float(low), "vmax": float(high)},
            cuts=cuts, label=label, contour=contour, compress=False))
    return compose_view(panels[0], panels[1] if len(panels) > 1 else None, out_file=out_file)


def input_figure(lr_file: str, sr_file: str, lr_to_output: np.ndarray, mask_file: str,
                 out_file: str) -> str:
    """The LR input (nearest neighbour, its slices visible) flickering into the output.

    Three planes, five cuts each, including the out-of-plane ones where the gain shows.
    """
    sr_image = nib.load(sr_file)
    lr_data = sample_on_grid(lr_file, sr_image.shape, sr_image.affine,
                             np.linalg.inv(lr_to_output), order=0)
    lr_image = nib.Nifti1Image(lr_data, sr_image.affine)
    return _flicker_views([(lr_image, "input (LR)"), (sr_image, "super-resolved")],
                          nib.load(mask_file), out_file)


def profile_figure(items: list[tuple[str, str, str, np.ndarray]], mask_file: str,
                   out_file: str) -> str:
    """Through-plane intensity profiles: for each ``(name, lr_file, sr_file, lr_to_output)``,
    the output along the line through the brain's centre in the direction of that input's thick
    axis, over the input (nearest neighbour: its slices are steps)."""
    mask = np.asanyarray(nib.load(mask_file).dataobj) > 0
    figure, axes = plt.subplots(len(items), 1, figsize=(12, 2.6 * len(items)), squeeze=False)
    for axis, (name, lr_file, sr_file, lr_to_output) in zip(axes[:, 0], items):
        sr_image = nib.load(sr_file)
        lr_image = nib.load(lr_file)
        direction = lr_to_output[:3, :3] @ lr_image.affine[:3, thick_axis(lr_image.affine)]
        columns = sr_image.affine[:3, :3] / np.linalg.norm(sr_image.affine[:3, :3], axis=0)
        line_axis = int(np.argmax(np.abs(columns.T @ direction)))
        centre = ([int(round(c)) for c in np.argwhere(mask).mean(axis=0)] if mask.any()
                  else [n // 2 for n in sr_image.shape])
        index = [slice(c, c + 1) for c in centre]
        index[line_axis] = slice(None)
        output = np.asanyarray(sr_image.dataobj, dtype=np.float32)[tuple(index)].ravel()
        # the line as a (N, 1, 1) grid: its first axis runs along the output's line axis
        line = np.eye(4)[:, [line_axis, (line_axis + 1) % 3, (line_axis + 2) % 3, 3]]
        line[:3, 3] = [0 if a == line_axis else c for a, c in enumerate(centre)]
        lr_data = sample_on_grid(lr_file, (len(output), 1, 1), sr_image.affine @ line,
                                 np.linalg.inv(lr_to_output), order=0).ravel()
        millimetres = np.arange(len(output)) * float(
            np.linalg.norm(sr_image.affine[:3, line_axis]))
        inside = mask[tuple(index)].ravel()
        axis.plot(millimetres, np.where(inside, lr_data, np.nan), color="0.6",
                  drawstyle="steps-mid", label="input (nearest neighbour)")
        axis.plot(millimetres, np.where(inside, output, np.nan), color="C0", label="output")
        axis.set_title(f"{name}: profile across its slices (output axis {line_axis})",
                       fontsize=9)
        axis.set_xlabel("mm along the line")
        axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(out_file, format="svg")
    plt.close(figure)
    return out_file


def template_figure(sr_file: str, template_file: str, mask_file: str, out_file: str) -> str:
    """The output flickering with the template, the output's brain outline on both."""
    sr_image = nib.load(sr_file)
    template = sample_on_grid(template_file, sr_image.shape, sr_image.affine, order=1)
    mask = nib.load(mask_file)
    return _flicker_views([(nib.Nifti1Image(template, sr_image.affine), "template"),
                           (sr_image, "output")], mask, out_file, contour=mask)


def mask_figure(sr_file: str, mask_file: str, out_file: str) -> str:
    """The brain mask's outline over the reference contrast's output, three planes."""
    image = np.asanyarray(nib.load(sr_file).dataobj, dtype=np.float32)
    mask = np.asanyarray(nib.load(mask_file).dataobj) > 0
    centre = [int(round(c)) for c in np.argwhere(mask).mean(axis=0)] if mask.any() else \
        [s // 2 for s in image.shape]
    limits = np.percentile(image[mask] if mask.any() else image, [1, 99.5])
    figure, axes = plt.subplots(1, 3, figsize=(12, 4))
    for axis, (name, cut) in enumerate(zip(("sagittal", "coronal", "axial"), centre)):
        picture = np.take(image, cut, axis=axis).T
        outline = np.take(mask, cut, axis=axis).T
        axes[axis].imshow(picture, cmap="gray", origin="lower", vmin=limits[0], vmax=limits[1])
        axes[axis].contour(outline, levels=[0.5], colors="red", linewidths=0.8)
        axes[axis].set_title(name)
        axes[axis].axis("off")
    figure.tight_layout()
    figure.savefig(out_file, format="svg")
    plt.close(figure)
    return out_file


def curves_figure(history_file: str, selected_epoch: int | None, out_file: str) -> str:
    """Training loss per image and MI per epoch, the selected epoch marked (INR); data misfit
    per image and the objective per iteration (JTV, whose history has ``objective``)."""
    history = pd.read_csv(history_file, sep="\t")
    step = "iteration" if "objective" in history else "epoch"
    figure, (loss_axis, mi_axis) = plt.subplots(1, 2, figsize=(12, 3.5))
    for column in [c for c in history.columns if c.startswith("loss_")]:
        loss_axis.semilogy(history["epoch"], history[column], label=column[5:])
    loss_axis.set_xlabel(step)
    loss_axis.set_ylabel("data misfit (normalised MSE)")
    loss_axis.legend(fontsize=8)
    if "mutual_information" in history:
        mi_axis.plot(history["epoch"], history["mutual_information"], "k.-")
        mi_axis.set_ylabel("MI between predicted contrasts")
    elif "objective" in history:
        mi_axis.semilogy(history["epoch"], history["objective"], "k-")
        mi_axis.set_ylabel("JTV objective")
    mi_axis.set_xlabel(step)
    for axis in (loss_axis, mi_axis):
        if selected_epoch:
            axis.axvline(selected_epoch, color="red", linestyle="--", label="selected epoch")
    figure.tight_layout()
    figure.savefig(out_file, format="svg")
    plt.close(figure)
    return out_file


def residual_figure(residual_files: list[str], names: list[str], out_file: str) -> str:
    """The central in-plane slice of each input's re-simulation residual (prediction - input)."""
    figure, axes = plt.subplots(1, len(residual_files), figsize=(5 * len(residual_files), 4.5),
                                squeeze=False)
    for axis, path, name in zip(axes[0], residual_files, names):
        image = nib.load(path)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        thick = thick_axis(image.affine)
        picture = np.take(data, data.shape[thick] // 2, axis=thick).T
        limit = float(np.percentile(np.abs(data[data != 0]), 99)) if np.any(data) else 1.0
        shown = axis.imshow(picture, cmap="RdBu_r", origin="lower", vmin=-limit, vmax=limit)
        axis.set_title(f"{name}\n(slice {data.shape[thick] // 2} of its own grid)", fontsize=9)
        axis.axis("off")
        figure.colorbar(shown, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(out_file, format="svg")
    plt.close(figure)
    return out_file


def fit_summary(fit_info: dict) -> str:
    """One sentence on how the fit went (epochs, selection, stop, time, device, resumption)."""
    if fit_info.get("method") == "unpaired":
        models = ", ".join(os.path.basename(p) for p in fit_info.get("models") or [])
        return (f"Cohort-trained unpaired models ({models or '?'}) applied in "
                f"{fit_info.get('fit_seconds', 0):.0f} s on {fit_info.get('device', '?')}; "
                "the curves are each model's HR-domain reconstruction loss over its training "
                "steps (the group level's).")
    if fit_info.get("method") == "jtv":
        sigmas = ", ".join(f"{v:.3g}" for v in fit_info.get("noise_sigma") or [])
        return (f"Joint-total-variation reconstruction: {fit_info.get('epochs_run', '?')} "
                f"iterations, {fit_info.get('fit_seconds', 0):.0f} s on "
                f"{fit_info.get('device', '?')}; noise level of each input estimated as "
                f"{sigmas or '?'} (its intensity units).")
    text = (f"{fit_info.get('epochs_run', '?')} epochs (selected epoch "
            f"{fit_info.get('selected_epoch', '?')}, stopped by "
            f"{fit_info.get('stop_reason', '?')}), {fit_info.get('fit_seconds', 0):.0f} s of "
            f"fitting on {fit_info.get('device', '?')}")
    if fit_info.get("resumed_from_epoch"):
        text += f", resumed after epoch {fit_info['resumed_from_epoch']} of an interrupted run"
    return text + "."


def recipe_section(recipe: dict) -> str:
    """The stages the reconstruction ran, each on or off, why, and its switch (INR only)."""
    if not recipe:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{'on' if stage['On'] else 'off'}</td>"
        f"<td>{html.escape(stage['Why'])}</td><td><code>{html.escape(stage['Switch'])}"
        "</code></td></tr>" for name, stage in recipe.items() if isinstance(stage, dict))
    return ("<h3>Recipe</h3>"
            f"<p>Acquisitions: {html.escape(str(recipe.get('Acquisitions', '?')))}.</p>"
            "<table><tr><th>stage</th><th></th><th>why</th><th>switch</th></tr>"
            f"{rows}</table>")


def holdout_section(metrics: pd.DataFrame) -> str:
    """The ``--qc-holdout`` scores as a table (image x method PSNR on the left-out slices, and
    the gain over cubic) with a sentence saying what they mean; empty without them."""
    rows = metrics[metrics["measure"].astype(str).str.startswith("holdout_psnr_")]
    if rows.empty:
        return ""
    table = rows.assign(method=rows["measure"].str.removeprefix("holdout_psnr_")).pivot_table(
        index="image", columns="method", values="value", sort=False)
    gains = metrics[metrics["measure"] == "holdout_gain"].set_index("image")["value"]
    table = table.rename(columns=lambda method: f"PSNR {method} (dB)")
    table.columns.name = None
    table["gain over cubic (dB)"] = gains.reindex(table.index)
    better = int((gains > 0).sum())
    return ("<h3>Ground-truth-free check: left-out slices</h3>"
            '<p class="note">Every K-th acquired slice of each input (--qc-holdout K) was left '
            "out of a second reconstruction; each method's result, re-simulated through the "
            "slice profile, is compared with what the scanner recorded there (PSNR, dB). With "
            "two slices missing at those places the check is harder than the real task: read "
            "the gain over cubic interpolation, not the level. The output beats interpolation "
            f"on {better} of {len(gains)} images.</p>"
            + table.reset_index().to_html(index=False, na_rep="n/a",
                                          float_format=lambda v: f"{v:.2f}"))


def registration_line(metrics: pd.DataFrame) -> str:
    """PASS or WARN for the registration checks, with their numbers (empty without checks)."""
    template, images = checks_from_rows(metrics.to_dict("records"))
    if template is None and not images:
        return ""
    reasons = registration_status(template, images)
    verdict = (f'<strong class="warn">WARN</strong>: {html.escape("; ".join(reasons))}'
               if reasons else '<strong class="pass">PASS</strong>')
    numbers = html.escape(describe_checks(template, images))
    return (f'<p class="qc">Registration checks: {verdict} ({numbers}; '
            f"WARN below Dice {TEMPLATE_DICE_MIN:g} or beyond {TEMPLATE_CENTRE_MAX_MM:g} mm on "
            f"the template, below Dice {IMAGE_DICE_MIN:g} between images).</p>")


def write_fragment(label: str, output_dir: str, inputs: list[str], outputs: list[str],
                   transforms: list[str], mask_file: str, reference_index: int,
                   template_file: str | None, history_file: str, metrics_file: str,
                   residual_files: list[str], fit_info: dict, methods: str) -> str:
    """Figures of one subject/session and the HTML section that shows them.

    ``label`` is ``sub-X`` or ``sub-X_ses-Y``; the figures go to ``sub-X/figures/`` and the
    section to ``sub-X/figures/<label>_report.html`` (assembled into ``sub-X.html`` by
    :func:`assemble_report`).  Returns the section's path.
    """
    subject = label.split("_")[0]
    figures = Path(output_dir) / subject / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    names = [os.path.basename(p).split(".")[0] for p in inputs]
    parts = [f'<section id="{html.escape(label)}"><h2>{html.escape(label)}</h2>',
             "<h3>Inputs and super-resolved outputs</h3>",
             '<p class="note">Each panel flickers between the input (nearest neighbour on the '
             "output grid: its thick slices show) and the output.</p>"]
    for name, lr_file, sr_file, transform in zip(names, inputs, outputs, transforms):
        stem, suffix = name.rsplit("_", 1)
        desc = OUTPUT_DESC[fit_info.get("method") or "inr"]
        figure = figures / f"{stem}_desc-{desc}_{suffix}.svg"
        # the ITK file holds output -> image points; the figure wants image -> output
        input_figure(lr_file, sr_file, np.linalg.inv(itk_file_to_ras(transform)), mask_file,
                     str(figure))
        parts.append(f"<h4>{html.escape(name)}</h4>"
                     f'<img src="{subject}/figures/{figure.name}" alt="{html.escape(name)}">')
    profile_svg = figures / f"{label}_desc-profile_plot.svg"
    profile_figure([(name, lr_file, sr_file, np.linalg.inv(itk_file_to_ras(transform)))
                    for name, lr_file, sr_file, transform in zip(names, inputs, outputs,
                                                                  transforms)],
                   mask_file, str(profile_svg))
    parts.append("<h3>Through-plane profiles</h3>"
                 '<p class="note">Each output along a line across its input\'s slices, through '
                 "the brain's centre, over the input: detail between the acquired slices shows "
                 "here, and so would a staircase. The input is shown as acquired; the output "
                 "follows N4 bias-field correction where it ran, so the two may differ by the "
                 "bias field.</p>"
                 f'<img src="{subject}/figures/{profile_svg.name}" alt="profiles">')
    reference_output = outputs[reference_index]
    mask_svg = figures / f"{label}_desc-brain_mask.svg"
    mask_figure(reference_output, mask_file, str(mask_svg))
    parts.append("<h3>Brain mask</h3>"
                 f'<img src="{subject}/figures/{mask_svg.name}" alt="brain mask">')
    metrics = pd.read_csv(metrics_file, sep="\t", na_values="n/a", keep_default_na=False)
    if template_file:
        template_svg = figures / f"{label}_desc-template_T1w.svg"
        template_figure(reference_output, template_file, mask_file, str(template_svg))
        parts.append("<h3>Registration to the template</h3>"
                     '<p class="note">Flicker between the template and the output of the '
                     "reference contrast; the outline is the output brain mask.</p>"
                     f'<img src="{subject}/figures/{template_svg.name}" alt="template">'
                     + registration_line(metrics))
    else:
        parts.append(registration_line(metrics))
    curves_svg = figures / f"{label}_desc-curves_history.svg"
    curves_figure(history_file, fit_info.get("selected_epoch"), str(curves_svg))
    parts.append(("<h3>Reconstruction</h3>" if fit_info.get("method") in ("jtv", "unpaired")
                  else "<h3>Training</h3>") + f"<p>{html.escape(fit_summary(fit_info))}</p>"
                 f'<img src="{subject}/figures/{curves_svg.name}" alt="training curves">')
    parts.append(recipe_section(fit_info.get("recipe") or {}))
    parts.append(holdout_section(metrics))
    parts.append("<h3>Metrics</h3>" + metrics.to_html(index=False, na_rep="n/a",
                                                        float_format=lambda v: f"{v:.4g}"))
    residual_svg = figures / f"{label}_desc-residual_map.svg"
    residual_figure(residual_files, names, str(residual_svg))
    parts.append("<h3>Re-simulation residuals</h3>"
                 '<p class="note">Model prediction at each input\'s own voxels minus the input '
                 "(inside the mask): structure here is what the model could not reproduce."
                 f'</p><img src="{subject}/figures/{residual_svg.name}" alt="residuals">')
    parts.append(f"<h3>Methods</h3><p>{html.escape(methods)}</p>"
                 f"<p>{html.escape(CITATION)}</p></section>")
    fragment = figures / f"{label}_report.html"
    temporary = fragment.with_suffix(".tmp")
    temporary.write_text("\n".join(parts))
    temporary.replace(fragment)
    return str(fragment)


def assemble_report(output_dir: str, subject: str) -> str:
    """``sub-X.html`` at the output root from the sections of all its sessions."""
    figures = Path(output_dir) / f"sub-{subject}" / "figures"
    sections = sorted(figures.glob(f"sub-{subject}*_report.html"))
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = "n/a"
    body = "\n".join(s.read_text() for s in sections) or "<p>No results for this subject.</p>"
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>mcinr-bids: sub-{html.escape(subject)}</title><style>{STYLE}</style>"
            f"</head><body><h1>mcinr-bids report: sub-{html.escape(subject)}</h1>{body}"
            f"<h2>Software</h2><p>mcinr-bids {__version__}, torch {torch_version}, "
            f"numpy {np.__version__}, nibabel {nib.__version__}.</p></body></html>")
    target = Path(output_dir) / f"sub-{subject}.html"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(page)
    temporary.replace(target)
    return str(target)

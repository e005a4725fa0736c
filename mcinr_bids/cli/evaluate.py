"""``mcinr-evaluate``: the paper's experiment (Table 1) on your own isotropic images."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from mcinr_bids import __version__
from mcinr_bids.cli.fit import check_output_dir, inr_settings
from mcinr_bids.cli.options import HelpFormatter, given_options
from mcinr_bids.core.images import load_mask
from mcinr_bids.core.io import write_text, write_tsv
from mcinr_bids.core.settings import DEVICES
from mcinr_bids.core.slices import load_acquisition
from mcinr_bids.core.volumes import InputError
from mcinr_bids.methods.inr.settings import PRESETS
from mcinr_bids.quality import metrics
from mcinr_bids.quality.evaluation import BASELINES, INR_MODELS, evaluate, simulate_acquisitions
from mcinr_bids.quality.simulation import PROTOCOLS


def format_table(rows: list[dict], names: list[str]) -> str:
    """A Markdown Table-1-style table: PSNR/SSIM per image in both conventions (and inside the
    lesion, strict, when scored), banding, MI error, time."""
    header = ["method"]
    for convention in metrics.CONVENTIONS:
        for name in names:
            header += [f"PSNR {convention} {name}", f"SSIM {convention} {name}"]
    lesion = any(f"psnr_lesion_{name}" in row for row in rows for name in names)
    if lesion:
        for name in names:
            header += [f"PSNR lesion {name}", f"SSIM lesion {name}"]
    header += [f"banding {name}" for name in names] + ["eps_MI joint", "fit s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"]]
        for convention in metrics.CONVENTIONS:
            for name in names:
                cells += [f"{row[f'psnr_{convention}_{name}']:.2f}",
                          f"{row[f'ssim_{convention}_{name}']:.3f}"]
        if lesion:
            for name in names:
                cells += [f"{row.get(f'psnr_lesion_{name}', float('nan')):.2f}",
                          f"{row.get(f'ssim_lesion_{name}', float('nan')):.3f}"]
        cells += [f"{row.get(f'banding_{name}', float('nan')):.2f}" for name in names]
        cells += [f"{row.get('epsilon_mi_joint', float('nan')):.3f}",
                  f"{row['fit_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcinr-evaluate",
        description="Simulate anisotropic acquisitions from co-registered isotropic images, "
                    "super-resolve them with INR variants and cubic splines, and score the "
                    "results against the originals (PSNR, SSIM, MI errors).",
        formatter_class=HelpFormatter)
    parser.add_argument("images", nargs="+", metavar="HR", help="isotropic images on one grid")
    parser.add_argument("--axes", nargs="+", required=True, metavar="AXIS",
                        help="world axis (R, A or S) to make thick for each image, in order")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for the tables")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="decimate",
                        help="decimate: keep every 4th slice (the paper); thick: average through "
                             "a box slice profile")
    parser.add_argument("--factor", type=int, default=4, help="slice spacing / voxel size")
    parser.add_argument("--mask", help="brain mask on the images' grid (default: foreground)")
    parser.add_argument("--lesion-mask", metavar="MASK",
                        help="lesion (or any region) on the images' grid, label > 0 (e.g. "
                             "BraTS tumour labels): strict PSNR and SSIM inside it as well, "
                             "for every method")
    parser.add_argument("--methods", nargs="+", choices=BASELINES + INR_MODELS,
                        default=list(BASELINES + INR_MODELS), help="what to compare")
    parser.add_argument("--unpaired-models", nargs="+", metavar="MODEL",
                        help="a row for the unpaired method: one trained model file per image "
                             "(its contrast's, from mcinr-bids group --train-unpaired)")
    parser.add_argument("--unpaired-nocontrast-models", nargs="+", metavar="MODEL",
                        help="the same for the ablation without the contrastive loss")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--psf", action=argparse.BooleanOptionalAction, default=None,
                        help="compare each LR voxel with the model's mean across its slice "
                             "(2 points across the slab) instead of its centre (default: "
                             "automatic: on for thick slices, i.e. an input's voxels 2x "
                             "longer along one axis, that are not point samples)")
    parser.add_argument("--config-file", metavar="TOML",
                        help="settings file: its [execution] device and random_seed, "
                             "[workflow] preset and [inr] table")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--omp-nthreads", dest="threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch, as mcinr-bids' option of that name "
                             "(default: torch's own choice)")
    parser.add_argument("--random-seed", dest="seed", type=int, default=0, metavar="N",
                        help="seed of every fit (model, sampling, networks)")
    parser.add_argument("--seed", dest="seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--version", action="version", version=f"mcinr-bids {__version__}")
    return parser


#: where each option of mcinr-evaluate goes
EVALUATE_OPTIONS = {"preset": ("workflow", "preset"), "epochs": ("inr", "epochs"),
                    "psf": ("inr", "psf"), "device": ("execution", "device"),
                    "threads": ("execution", "omp_nthreads"),
                    "seed": ("execution", "random_seed")}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output_dir(args.output_dir)
        if len(args.axes) != len(args.images):
            raise InputError(f"{len(args.axes)} axes for {len(args.images)} images: give one "
                             "--axes letter per image.")
        volumes = [load_acquisition(path) for path in args.images]
        mask = load_mask(args.mask, volumes[0]) if args.mask else None
        try:
            simulation = simulate_acquisitions(volumes, args.axes, args.protocol, args.factor,
                                               mask)
        except ValueError as error:
            raise InputError(str(error)) from error
        if args.lesion_mask:
            simulation.lesion = load_mask(args.lesion_mask, volumes[0])
            if not (simulation.lesion & simulation.mask).any():
                raise InputError(f"{args.lesion_mask}: the lesion lies outside the evaluation "
                                 "mask; check that it belongs to these images.")
        for warning in simulation.warnings:
            print(f"mcinr-evaluate: warning: {warning}", file=sys.stderr)
        settings = inr_settings(given_options(build_parser, argv), EVALUATE_OPTIONS)
        methods = [m for m in args.methods if len(volumes) > 1 or m not in ("split", "vanilla")]
        unpaired = {}
        for variant, files in (("unpaired", args.unpaired_models),
                               ("unpaired-nocontrast", args.unpaired_nocontrast_models)):
            if files and len(files) != len(volumes):
                raise InputError(f"{len(files)} {variant} model(s) for {len(volumes)} images: "
                                 f"give one --{variant}-models file per image.")
            if files:
                unpaired[variant] = files
        rows = evaluate(simulation, methods, settings, progress=not args.quiet,
                        unpaired_models=unpaired)
    except (InputError, ValueError) as error:
        print(f"mcinr-evaluate: error: {error}", file=sys.stderr)
        return 2
    table = format_table(rows, simulation.names)
    print(table)
    formatted = [{k: (f"{v:.6g}" if isinstance(v, (float, np.floating)) else v)
                  for k, v in row.items()} for row in rows]
    write_tsv(formatted, os.path.join(args.output_dir, "evaluation.tsv"), columns=list(rows[-1]))
    write_text(table + "\n", os.path.join(args.output_dir, "evaluation.md"))
    print(f"tables in {os.path.abspath(args.output_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

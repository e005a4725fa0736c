"""``mcinr-fit``: super-resolve N anisotropic images of one subject with one INR."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from mcinr_bids import __version__
from mcinr_bids.cli.options import (
    HelpFormatter,
    OptionMap,
    describe_os_error,
    given_options,
    to_tables,
)
from mcinr_bids.config import resolve_config_file
from mcinr_bids.core.images import load_mask
from mcinr_bids.core.io import write_json
from mcinr_bids.core.settings import DEVICES
from mcinr_bids.core.slices import load_acquisition
from mcinr_bids.core.volumes import InputError
from mcinr_bids.methods.inr import reference_grid
from mcinr_bids.methods.inr.settings import MODELS, PRESETS
from mcinr_bids.pipeline.reconstruct import superresolve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcinr-fit",
        description="Fit one implicit neural representation to all anisotropic images of a "
                    "subject at once and write an isotropic volume of every contrast.",
        formatter_class=HelpFormatter)
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="3D NIfTI images of one subject (any grids, any orientations)")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for the outputs")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--mask", nargs="+", metavar="MASK",
                        help="brain masks, one per image, each on its image's grid "
                             "(default: automatic foreground masks)")
    inputs.add_argument("--transform", nargs="+", metavar="MATRIX",
                        help="rigid world-to-world 4x4 matrices (text files), one per image, "
                             "mapping each image's world space into the common space")
    grid = parser.add_argument_group("output grid").add_mutually_exclusive_group()
    grid.add_argument("--resolution", type=float, default=1.0,
                      help="isotropic voxel size (mm) of a grid over the union field of view")
    grid.add_argument("--reference", metavar="REF", help="predict on this image's grid instead")
    model = parser.add_argument_group("model and fit")
    model.add_argument("--preset", choices=sorted(PRESETS), default="fast",
                       help="'fast' (default, CPU-friendly), 'paper' (Table 3 of the paper) or "
                            "'thick-slices' (fast + each slab's mean in the fit, ~4x slower)")
    model.add_argument("--model", choices=MODELS, default="split",
                       help="split: shared trunk + one head per contrast; vanilla: one trunk, "
                            "N outputs; single: one model per image")
    model.add_argument("--psf", action=argparse.BooleanOptionalAction, default=None,
                       help="compare each LR voxel with the model's mean across its slice "
                            "(2 points across the slab) instead of its centre (default: "
                            "automatic: on for thick slices, i.e. an input's voxels 2x "
                            "longer along one axis, that are not point samples)")
    model.add_argument("--epochs", type=int, default=None, help="maximum epochs (preset's)")
    model.add_argument("--no-early-stopping", action="store_true",
                       help="train all epochs; the epoch the MI rule picks is still recorded")
    model.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                       help="stop fitting after this many seconds and keep the result")
    model.add_argument("--config-file", metavar="TOML",
                       help="settings file: its [execution] device, omp_nthreads and random_seed, "
                            "[workflow] preset and [inr] table (e.g. a run's mcinr.toml); "
                            "options given here win")
    model.add_argument("--qc-holdout", type=int, default=0, metavar="K",
                       help="ground-truth-free check: leave every K-th slice of each image out "
                            "of a second fit and score the INR, JTV and clamped cubic on those "
                            "slices (rows holdout_* in metrics.tsv; doubles the time); 0: off "
                            "([workflow] qc_holdout of a --config-file)")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", choices=DEVICES, default="auto",
                           help="auto picks cuda, then mps, then cpu")
    execution.add_argument("--omp-nthreads", dest="threads", type=int, default=None,
                           metavar="N", help="CPU threads for torch, as mcinr-bids' option of "
                           "that name (default: torch's own choice)")
    execution.add_argument("--threads", dest="threads", type=int, help=argparse.SUPPRESS)
    execution.add_argument("--random-seed", dest="seed", type=int, default=0, metavar="N",
                           help="seed of the model, the sampling and the networks")
    execution.add_argument("--seed", dest="seed", type=int, help=argparse.SUPPRESS)
    execution.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--version", action="version", version=f"mcinr-bids {__version__}")
    return parser


#: where each option of mcinr-fit goes
FIT_OPTIONS: OptionMap = {
    "preset": ("workflow", "preset"),
    "model": ("inr", "model"),
    "psf": ("inr", "psf"),
    "epochs": ("inr", "epochs"),
    "no_early_stopping": ("inr", "early_stopping", lambda flag: not flag),
    "time_limit": ("inr", "time_limit_seconds"),
    "device": ("execution", "device"),
    "threads": ("execution", "omp_nthreads"),
    "seed": ("execution", "random_seed"),
    "qc_holdout": ("workflow", "qc_holdout"),
}


def fit_config(given: dict, option_map: OptionMap = FIT_OPTIONS):
    """The settings of a command line: preset, then --config-file's [execution] (device,
    threads, seed), [workflow] and [inr] tables, then the options given
    (:func:`mcinr_bids.config.resolve_config`)."""
    return resolve_config_file(given.get("config_file"), to_tables(given, option_map),
                               tables=("execution", "workflow", "inr"))


def inr_settings(given: dict, option_map: OptionMap = FIT_OPTIONS):
    """The INR settings of a command line (:func:`fit_config`)."""
    return fit_config(given, option_map).inr


def check_output_dir(path: str) -> None:
    """Create ``path`` and prove it is writable, or raise InputError naming it."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".mcinr-write-test-{os.getpid()}")
        with open(probe, "w") as handle:
            handle.write("ok")
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"{path}: the output folder cannot be written ({error.strerror}); "
                         "choose a folder you can write to.") from error


def unique_names(names: list[str]) -> list[str]:
    """Append _1, _2 ... to repeated names so no output overwrites another."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


def load_transform(path: str) -> np.ndarray:
    try:
        matrix = np.loadtxt(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable text 4x4 matrix ({error}).") from error
    if matrix.shape != (4, 4):
        raise InputError(f"{path}: expected a 4x4 world-to-world matrix, got {matrix.shape}.")
    return matrix


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    started = time.perf_counter()
    volumes = [load_acquisition(path) for path in args.images]
    for volume, name in zip(volumes, unique_names([v.name for v in volumes])):
        volume.name = name
    if args.mask and len(args.mask) != len(volumes):
        raise InputError(f"{len(args.mask)} masks for {len(volumes)} images: give one --mask per "
                         "image, in the same order.")
    masks = [load_mask(m, v) for m, v in zip(args.mask, volumes)] if args.mask else None
    if args.transform and len(args.transform) != len(volumes):
        raise InputError(f"{len(args.transform)} transforms for {len(volumes)} images: give one "
                         "--transform per image, in the same order.")
    transforms = [load_transform(t) for t in args.transform] if args.transform else None
    config = fit_config(given_options(build_parser, argv))
    settings, every = config.inr, config.workflow.qc_holdout
    grid = reference_grid(args.reference) if args.reference else None
    if every:  # too few slices: say so before the first fit
        from mcinr_bids.quality.holdout import hold_out

        for volume in volumes:
            hold_out(volume, every)
    check_output_dir(args.output_dir)  # after every input check: a bad input leaves no folder
    if not args.quiet:
        print_recipe(settings, volumes)
    outputs = superresolve(volumes, settings, args.output_dir, masks=masks,
                           transforms=transforms, grid=grid, resolution=args.resolution,
                           progress=not args.quiet)
    if every:
        from mcinr_bids.pipeline.reconstruct import append_metrics
        from mcinr_bids.quality.holdout import holdout_check

        outputs["holdout"] = holdout_check(volumes, every, masks=masks,
                                           transforms=transforms, resolution=args.resolution,
                                           settings=settings)
        append_metrics(outputs["metrics"], outputs["holdout"], outputs["metrics"])
    import torch

    parameters = {
        "software": {"mcinr-bids": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "command": sys.argv,
        "inputs": [os.path.abspath(p) for p in args.images],
        "masks": [os.path.abspath(p) for p in args.mask] if args.mask else None,
        "settings": settings.to_dict(),
        "torch_threads": torch.get_num_threads(),
        **{k: v for k, v in outputs.items() if k not in ("images", "shape", "affine")},
        "total_seconds": round(time.perf_counter() - started, 2),
        "output_grid": {"shape": outputs["shape"], "affine": outputs["affine"]},
        "outputs": {v.name: path for v, path in zip(volumes, outputs["images"])},
    }
    write_json(parameters, os.path.join(args.output_dir, "parameters.json"))
    return parameters


def print_recipe(settings, volumes) -> None:
    """The stages this fit will run, each on or off and why (:mod:`.recipe`)."""
    from mcinr_bids.core.slices import acquisitions
    from mcinr_bids.methods.inr.recipe import decide_recipe

    _, recipe = decide_recipe(settings, *acquisitions(volumes))
    print("recipe:\n  " + "\n  ".join(recipe.lines()))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parameters = run(args, argv)
    except (InputError, ValueError) as error:
        print(f"mcinr-fit: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the disk filled up while writing the outputs
        print(f"mcinr-fit: error: {describe_os_error(error, args.output_dir)}",
              file=sys.stderr)
        return 2
    for name, path in parameters["outputs"].items():
        print(f"{name}: {path}")
    for row in parameters.get("holdout", []):
        if row["measure"] == "holdout_gain":
            print(f"{row['image']}: on the left-out slices {row['value']:+.2f} dB over clamped "
                  "cubic")
    print(f"fit {parameters['fit_seconds']:.1f} s ({parameters['epochs_run']} epochs, selected "
          f"epoch {parameters['selected_epoch']}) on {parameters['device']}; outputs in "
          f"{os.path.abspath(args.output_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

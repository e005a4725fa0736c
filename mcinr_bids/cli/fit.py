"""``mcinr-fit``: super-resolve N anisotropic images of one subject with one INR."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from .. import __version__
from ..config import MODELS, PRESETS, settings_for_preset
from ..inr import (
    InputError,
    fit_inr,
    load_mask,
    load_volume,
    predict_on_grid,
    reference_grid,
    save_checkpoint,
    save_nifti,
    union_grid,
)
from ..inr.predict import atomic_write, write_history


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcinr-fit",
        description="Fit one implicit neural representation to all anisotropic images of a "
                    "subject at once and write an isotropic volume of every contrast.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
                       help="'fast' (default, CPU-friendly) or 'paper' (Table 3 of the paper)")
    model.add_argument("--model", choices=MODELS, default=None,
                       help="split: shared trunk + one head per contrast; vanilla: one trunk, "
                            "N outputs; single: one model per image (default: split)")
    model.add_argument("--psf", action="store_true",
                       help="compare each LR voxel with the mean prediction over its "
                            "slice profile")
    model.add_argument("--epochs", type=int, default=None, help="maximum epochs (preset's)")
    model.add_argument("--no-early-stopping", action="store_true",
                       help="train all epochs; the epoch the MI rule picks is still recorded")
    model.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                       help="stop fitting after this many seconds and keep the result")
    model.add_argument("--config-file", metavar="TOML",
                       help="INR settings ([inr] table) overriding the preset")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                           help="auto picks cuda, then mps, then cpu")
    execution.add_argument("--threads", type=int, default=None,
                           help="CPU threads for torch (default: torch's own choice)")
    execution.add_argument("--seed", type=int, default=0, help="random seed")
    execution.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--version", action="version", version=f"mcinr-bids {__version__}")
    return parser


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


def write_json(values: dict, path: str) -> None:
    def write(temporary):
        with open(temporary, "w") as handle:
            json.dump(values, handle, indent=2, default=str)

    atomic_write(path, write)


def load_transform(path: str) -> np.ndarray:
    try:
        matrix = np.loadtxt(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable text 4x4 matrix ({error}).") from error
    if matrix.shape != (4, 4):
        raise InputError(f"{path}: expected a 4x4 world-to-world matrix, got {matrix.shape}.")
    return matrix


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    check_output_dir(args.output_dir)
    volumes = [load_volume(path) for path in args.images]
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
    if args.config_file:
        from ..config import load_settings

        base = load_settings(args.config_file).to_dict()
        base.update({k: v for k, v in {"model": args.model, "epochs": args.epochs}.items()
                     if v is not None})
        settings = settings_for_preset("fast", **base)
    else:
        settings = settings_for_preset(args.preset, model=args.model, epochs=args.epochs)
    settings.psf = settings.psf or args.psf
    settings.early_stopping = settings.early_stopping and not args.no_early_stopping
    settings.device, settings.seed, settings.threads = args.device, args.seed, args.threads
    if args.time_limit is not None:
        settings.time_limit_seconds = args.time_limit

    fitted = fit_inr(volumes, settings, masks=masks, transforms=transforms,
                     progress=not args.quiet)
    predict_start = time.perf_counter()
    if args.reference:
        shape, affine = reference_grid(args.reference)
    else:
        shape, affine = union_grid(fitted, args.resolution)
    predictions, foreground = predict_on_grid(fitted, shape, affine)
    predict_seconds = time.perf_counter() - predict_start

    outputs = {}
    for volume, prediction in zip(volumes, predictions):
        path = os.path.join(args.output_dir, f"{volume.name}_desc-superres.nii.gz")
        save_nifti(prediction, affine, path)
        outputs[volume.name] = path
    mask_path = os.path.join(args.output_dir, "desc-brain_mask.nii.gz")
    save_nifti(foreground, affine, mask_path)
    checkpoint_path = os.path.join(args.output_dir, "model.pt")
    save_checkpoint(fitted, checkpoint_path)
    history_path = os.path.join(args.output_dir, "history.tsv")
    write_history(fitted.history, history_path)
    import torch

    parameters = {
        "software": {"mcinr-bids": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "command": sys.argv,
        "inputs": [os.path.abspath(p) for p in args.images],
        "masks": [os.path.abspath(p) for p in args.mask] if args.mask else None,
        "settings": fitted.settings.to_dict(),
        "device": fitted.device,
        "torch_threads": torch.get_num_threads(),
        "epochs_run": len(fitted.history),
        "selected_epoch": fitted.selected_epoch,
        "stopped_early": fitted.stopped_early,
        "stop_reason": fitted.stop_reason,
        "fit_seconds": fitted.fit_seconds,
        "predict_seconds": predict_seconds,
        "total_seconds": time.perf_counter() - started,
        "output_grid": {"shape": list(shape), "affine": np.asarray(affine).tolist()},
        "outputs": outputs,
    }
    write_json(parameters, os.path.join(args.output_dir, "parameters.json"))
    return parameters


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parameters = run(args)
    except InputError as error:
        print(f"mcinr-fit: error: {error}", file=sys.stderr)
        return 2
    for name, path in parameters["outputs"].items():
        print(f"{name}: {path}")
    print(f"fit {parameters['fit_seconds']:.1f} s ({parameters['epochs_run']} epochs, selected "
          f"epoch {parameters['selected_epoch']}) on {parameters['device']}; outputs in "
          f"{os.path.abspath(args.output_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The unpaired contrastive method (issue 16), leave one case out on the shared real cases.

For each held-out case and contrast (T1c thick along S, FLAIR thick along R, the protocol of
shared/data/README.md): the LR domain is the *other* cases' simulated acquisitions of that
contrast, the HR domain their isotropic originals (planes with real detail only) plus, for
T1c, the MNI152 T1 template that nilearn ships, and the LR images' own in-plane slices.  The
model is applied to the held-out case's acquisition and scored against its truth beside
clamped cubic (strict PSNR / SSIM, banding), with the contrastive ablation.

    python benchmarks/unpaired_cases.py [--held-out C ...] [--steps N] [--protocol thick]
        [--threads 2] [--no-ablation] [--save DIR]

``--save DIR`` writes each held-out case's reconstructions (and its truth and clamped cubic)
as NIfTI files, to look at them beside each other.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import real_data_folder
from engine_cases import CASES


def load_case(folder, case: str):
    import numpy as np

    from mcinr_bids.core.images import load_volume

    t1_name, flair_name, mask_name = CASES[case]
    t1 = load_volume(os.path.join(folder, case, t1_name))
    flair = load_volume(os.path.join(folder, case, flair_name))
    t1.name, flair.name = "t1", "flair"
    mask = (load_volume(os.path.join(folder, case, mask_name)).data > 0 if mask_name
            else (t1.data > 0) & (flair.data > 0))
    return t1, flair, np.asarray(mask, dtype=bool)


def mni_t1():
    import nibabel as nib
    import numpy as np
    from nilearn.datasets import MNI152_FILE_PATH

    from mcinr_bids.core.volumes import Volume

    image = nib.load(MNI152_FILE_PATH)
    return Volume(np.asanyarray(image.dataobj, dtype=np.float32), image.affine, name="mni152")


def save(folder: str | None, case: str, method: str, images: list, affine) -> None:
    """``<folder>/<case>_<method>_<t1|flair>.nii.gz`` (nothing without a folder)."""
    if not folder:
        return
    import nibabel as nib

    os.makedirs(folder, exist_ok=True)
    for name, image in zip(("t1", "flair"), images):
        nib.save(nib.Nifti1Image(image, affine), os.path.join(folder,
                                                              f"{case}_{method}_{name}.nii.gz"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: "
                                                                "the settings' default)")
    parser.add_argument("--protocol", choices=("decimate", "thick"), default="thick")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--save", type=str, default=None, metavar="DIR")
    args = parser.parse_args()
    import dataclasses

    import torch

    from mcinr_bids.methods.unpaired.apply import unpaired_on_grid
    from mcinr_bids.methods.unpaired.settings import UnpairedSettings
    from mcinr_bids.methods.unpaired.train import train_unpaired
    from mcinr_bids.quality.evaluation import run_baseline, score, simulate_acquisitions

    torch.set_num_threads(args.threads)
    folder = real_data_folder()
    missing = [c for c in CASES if not (folder / c).is_dir()]
    if missing:
        print(f"cases missing under {folder}: {missing} (set MCINR_REAL_DATA)", file=sys.stderr)
        return 1
    settings = UnpairedSettings(device="cpu", threads=args.threads,
                                **({"steps": args.steps} if args.steps else {}))
    variants = {"unpaired": settings}
    if not args.no_ablation:
        variants["unpaired-nocontrast"] = dataclasses.replace(settings, weight_contrastive=0.0)
    axes = ("S", "R")
    simulations = {}
    for case in CASES:
        t1, flair, mask = load_case(folder, case)
        simulations[case] = (simulate_acquisitions([t1, flair], list(axes), args.protocol, 4,
                                                   mask), t1, flair, mask)
    template = mni_t1()
    print(f"{args.protocol}: T1c x4 along S, FLAIR x4 along R; {settings.steps} steps\n")
    print("| held-out case | method | PSNR T1c | PSNR FLAIR | SSIM T1c | SSIM FLAIR | banding "
          "T1c | banding FLAIR | training s (T1c + FLAIR) | inference s per image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for held_out in args.held_out:
        simulation = simulations[held_out][0]
        cubic, _ = run_baseline("cubic-clamped", simulation)
        rows = [("cubic-clamped", score(cubic, simulation), "", "")]
        save(args.save, held_out, "truth", simulation.truths, simulation.affine)
        save(args.save, held_out, "cubic-clamped", cubic, simulation.affine)
        others = [c for c in CASES if c != held_out]
        for variant, variant_settings in variants.items():
            predictions, train_seconds, apply_seconds = [], 0.0, 0.0
            for index, contrast in enumerate(("t1", "flair")):
                low = [simulations[c][0].low_resolution[index] for c in others]
                high = [simulations[c][1 + index] for c in others]
                masks_high = [simulations[c][3] for c in others]
                if contrast == "t1":
                    high, masks_high = [*high, template], [*masks_high, None]
                trained = train_unpaired(low, high, variant_settings, contrast=contrast,
                                         masks_high=masks_high, progress=False)
                train_seconds += trained.seconds
                start = time.perf_counter()
                predictions.append(unpaired_on_grid(
                    trained, simulation.low_resolution[index], simulation.truths[0].shape,
                    simulation.affine))
                apply_seconds += time.perf_counter() - start
            save(args.save, held_out, variant, predictions, simulation.affine)
            rows.append((variant, score(predictions, simulation), f"{train_seconds:.0f}",
                         f"{apply_seconds / 2:.1f}"))
        for method, row, train_s, apply_s in rows:
            print(f"| {held_out} | {method} | {row['psnr_strict_t1']:.2f} | "
                  f"{row['psnr_strict_flair']:.2f} | {row['ssim_strict_t1']:.4f} | "
                  f"{row['ssim_strict_flair']:.4f} | {row['banding_t1']:.2f} | "
                  f"{row['banding_flair']:.2f} | {train_s} | {apply_s} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

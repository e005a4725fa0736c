"""JTV started from cubic splines or from the INR's consistent output, alone and blended with
the INR (engine only, thick slices: T1c x4 along S, FLAIR x4 along R), on one fit per run.

    python benchmarks/jtv_start.py [--seed 0] [--threads 1] [--case brats-gli-00001-000]
"""

from __future__ import annotations

import argparse
import sys
import time

from common import real_data_folder

FILES = {"brats-gli-00001-000": ("BraTS-GLI-00001-000-t1c.nii.gz",
                                 "BraTS-GLI-00001-000-t2f.nii.gz"),
         "brats2013-pat0005": ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz"),
         "brats2013-pat0006": ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--case", choices=sorted(FILES), default="brats-gli-00001-000")
    args = parser.parse_args()

    import torch

    from mcinr_bids.core.images import load_volume
    from mcinr_bids.methods.inr.postprocessing import blend
    from mcinr_bids.methods.inr.settings import INRSettings
    from mcinr_bids.methods.jtv import JTVSettings, reconstruct_jtv
    from mcinr_bids.quality.evaluation import run_inr, score, simulate_acquisitions

    torch.set_num_threads(args.threads)
    folder = real_data_folder() / args.case
    volumes = [load_volume(str(folder / name)) for name in FILES[args.case]]
    for volume, name in zip(volumes, ("T1c", "FLAIR")):
        volume.name = name
    mask = None
    if (folder / "brainmask.nii.gz").exists():
        mask = load_volume(str(folder / "brainmask.nii.gz")).data > 0
    simulation = simulate_acquisitions(volumes, ["S", "R"], "thick", 4, mask=mask)

    def show(label, images, started):
        row = score(images, simulation)
        print(f"| {label} | " + " | ".join(
            f"{row[f'{m}_{n}']:{f}}" for m, f in (("psnr_strict", ".2f"), ("ssim_strict", ".4f"),
                                                   ("banding", ".2f"))
            for n in ("T1c", "FLAIR")) + f" | {time.perf_counter() - started:.0f} |",
            flush=True)

    started = time.perf_counter()
    # the point model, as measured in the 2026-12-02 entry (thick slices now get the slab model)
    inr, fitted = run_inr(INRSettings(seed=args.seed, jtv_blend=0.0, psf=False), simulation)
    show(f"INR + consistency ({len(fitted.history)} epochs)", inr, started)
    shape, affine = simulation.truths[0].shape, simulation.affine
    for iterations, start in ((150, "cubic"), (150, "INR"), (50, "INR"), (20, "INR")):
        started = time.perf_counter()
        jtv, _ = reconstruct_jtv(simulation.low_resolution, shape, affine,
                                 JTVSettings(iterations=iterations),
                                 start=None if start == "cubic" else inr)
        show(f"JTV from {start}, {iterations} iterations", jtv, started)
        show("blend 0.5 with the INR", blend(inr, jtv, 0.5), started)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The INR engine (fast-split, default settings) against clamped cubic on every shared real case.

Engine only (no BIDS App: no registration, no N4): each case's T1c decimated x4 along S and its
FLAIR x4 along A (each contrast's weakest axis, shared/data/README.md), fitted jointly, predicted
on the 1 mm grid and scored inside the case's brain mask (both images > 0 where there is none).
Prints a Markdown table of strict PSNR / SSIM, with a "band limit" row: each truth low-passed
at the Nyquist frequency of its slices (what restoring every sampled frequency, and nothing
above, would score).

    python benchmarks/engine_cases.py [--threads 2] [--epochs 40] [--cases C ...]
        [--axes S A] [--protocol decimate|thick] [--models split single] [--seeds 0 1]
        [--jtv 1 3] [--post-processing] [--set KEY=VALUE ...] [--slice-thickness MM]

``--axes S R`` decimates the FLAIR along R instead, an axis along which the shared FLAIRs were
truly acquired at 1 mm (shared/data/README.md), so that its ground truth holds along the axis
that is removed.  ``--seeds`` repeats every INR fit with each seed (run-to-run spread).
``--post-processing`` adds two things tried on top of each split fit and not adopted
(benchmarks/RESULTS.md): the residual at each LR voxel interpolated back onto the output grid
(iterative back-projection, one step) and the mean of the INR and clamped cubic.
``--set`` overrides any INR setting (the value read as JSON, else as text: ``--set
feature_diffusion=8 grid_cell_sizes_mm=[16,8,4,2]``); ``--slice-thickness`` gives every
simulated image that slice thickness (a sidecar's ``SliceThickness``; decimated data have their
true slab, one isotropic voxel, and so the point profile, unless it says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from common import real_data_folder

CASES = {
    "brats-gli-00001-000": ("BraTS-GLI-00001-000-t1c.nii.gz", "BraTS-GLI-00001-000-t2f.nii.gz",
                            None),
    "brats2013-pat0005": ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz",
                          "brainmask.nii.gz"),
    "brats2013-pat0006": ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz",
                          "brainmask.nii.gz"),
}


def residual_corrected(predictions, fitted, simulation):
    """Each prediction plus the cubic interpolation of its image's residual (LR voxel minus the
    model at that voxel's centre) onto the output grid, clipped to the LR image's range."""
    import numpy as np

    from mcinr_bids.core.geometry import world_coordinates
    from mcinr_bids.core.interpolation import cubic_on_grid

    corrected = []
    for index, (prediction, low) in enumerate(zip(predictions, simulation.low_resolution)):
        voxels = np.indices(low.shape).reshape(3, -1).T
        model = fitted.predict(world_coordinates(low.affine, voxels))[:, index]
        residual = low.data - model.reshape(low.shape)
        correction = cubic_on_grid(residual, low.affine, prediction.shape, simulation.affine,
                                   clamp=False)
        corrected.append(np.clip(prediction + correction, low.data.min(), low.data.max()))
    return corrected


def run_case(folder: str, t1_name: str, flair_name: str, mask_name: str | None,
             epochs: int, axes: tuple[str, str] = ("S", "A"),
             models: tuple[str, ...] = ("split",), seeds: tuple[int, ...] = (0,),
             post_processing: bool = False, protocol: str = "decimate",
             jtv: tuple[float, ...] = (), psf: tuple | None = None,
             jtv_epsilon: float = 1e-3, psf_epochs: int | None = None,
             image_weights: list[float] | None = None, overrides: dict | None = None,
             slice_thickness: float | None = None) -> list[dict]:
    from mcinr_bids.core.images import load_volume
    from mcinr_bids.methods.inr import predict_on_grid
    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.quality.evaluation import run_baseline, run_inr, score, simulate_acquisitions
    from mcinr_bids.quality.metrics import band_limited

    t1 = load_volume(os.path.join(folder, t1_name))
    flair = load_volume(os.path.join(folder, flair_name))
    t1.name, flair.name = "t1", "flair"
    if mask_name:
        mask = load_volume(os.path.join(folder, mask_name)).data > 0
    else:
        mask = (t1.data > 0) & (flair.data > 0)
    simulation = simulate_acquisitions([t1, flair], list(axes), protocol, 4, mask)
    for low in simulation.low_resolution:
        low.slice_thickness_mm = slice_thickness or low.slice_thickness_mm
    for warning in simulation.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    rows = []
    jtv_predictions = None
    # every frequency the slices sample restored, nothing above (an ideal in-band method)
    rows.append({"method": "band limit (truth low-passed at the slices' Nyquist)",
                 "seconds": "", "epochs": "", **score(
                     [band_limited(truth, axis, simulation.factor) for truth, axis in
                      zip(simulation.truths, simulation.axes)], simulation)})
    cubic, seconds = run_baseline("cubic-clamped", simulation)
    rows.append({"method": "cubic-clamped", "seconds": seconds, "epochs": "",
                 **score(cubic, simulation)})
    for weight in jtv:
        from mcinr_bids.methods.jtv import JTVSettings

        settings = JTVSettings(regularisation=weight, epsilon=jtv_epsilon)
        predictions, seconds = run_baseline("jtv", simulation, settings)
        jtv_predictions = jtv_predictions or predictions
        rows.append({"method": f"jtv lambda {weight:g}"
                     + (f" epsilon {jtv_epsilon:g}" if jtv_epsilon != 1e-3 else ""),
                     "seconds": seconds, "epochs": "",
                     **score(predictions, simulation)})
    for seed in seeds:
        for model in models:
            name = (f"fast-{model}" + (f" psf {' '.join(psf)}" if psf else "")
                    + (f" last {psf_epochs} epochs" if psf and psf_epochs else "")
                    + (f" weights {image_weights}" if image_weights else "")
                    + "".join(f" {k}={v}" for k, v in (overrides or {}).items())
                    + (f" slice {slice_thickness:g} mm" if slice_thickness else "")
                    + (f" seed {seed}" if len(seeds) > 1 else ""))
            start = time.perf_counter()
            changes = ({"psf": True, "psf_profile": psf[0], "psf_samples": int(psf[1]),
                          "psf_unbiased": "unbiased" in psf[2:],
                          "psf_sampling": "stratified" if "stratified" in psf[2:] else "random",
                          "psf_epochs": psf_epochs}
                       if psf else {})
            predictions, fitted = run_inr(
                settings_for_preset("fast", epochs=epochs, model=model, seed=seed,
                                    image_weights=image_weights,
                                    **{**changes, **(overrides or {})}),
                simulation)
            rows.append({"method": name, "seconds": time.perf_counter() - start,
                         "epochs": len(fitted.history), **score(predictions, simulation)})
            if fitted.settings.consistency_steps:
                raw, _ = predict_on_grid(fitted, simulation.truths[0].shape, simulation.affine)
                rows.append({"method": f"{name}, no consistency step", "seconds": "",
                             "epochs": "", **score(raw, simulation)})
            if jtv_predictions is not None:
                rows.append({"method": f"({name} + jtv) / 2", "seconds": "", "epochs": "",
                             **score([(p + j) / 2 for p, j in
                                      zip(predictions, jtv_predictions)], simulation)})
            if post_processing and model == "split":
                rows.append({"method": f"{name} + residual", "seconds": "", "epochs": "",
                             **score(residual_corrected(predictions, fitted, simulation),
                                     simulation)})
                rows.append({"method": f"({name} + cubic-clamped) / 2", "seconds": "",
                             "epochs": "", **score([(p + c) / 2 for p, c in
                                                    zip(predictions, cubic)], simulation)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--axes", nargs=2, default=["S", "A"], metavar=("T1C_AXIS", "FLAIR_AXIS"),
                        help="axis along which each contrast is decimated x4")
    parser.add_argument("--psf", nargs="+", metavar="PROFILE SAMPLES [unbiased|stratified]",
                        help="INR with a slice-profile forward model: gaussian|box, the "
                             "points per LR voxel and step, and 'unbiased' for the pairwise "
                             "loss or 'stratified' for fixed midpoints across the slab")
    parser.add_argument("--psf-epochs", type=int,
                        help="the slab model in the last N epochs only (point model before)")
    parser.add_argument("--image-weights", nargs=2, type=float, metavar=("T1C", "FLAIR"),
                        help="each image's weight in the INR's loss (default: equal)")
    parser.add_argument("--jtv", nargs="*", type=float, default=[], metavar="LAMBDA",
                        help="also the joint-total-variation reconstruction, one row per "
                             "regularisation weight")
    parser.add_argument("--jtv-epsilon", type=float, default=1e-3,
                        help="the JTV's smoothing of |gradient| (normalised intensities)")
    parser.add_argument("--models", nargs="*", default=["split"],
                        choices=["split", "vanilla", "single"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="INR settings overrides (values as JSON, else text)")
    parser.add_argument("--slice-thickness", type=float,
                        help="the simulated images' slice thickness, mm (default: spacing)")
    parser.add_argument("--protocol", choices=("decimate", "thick"), default="decimate",
                        help="decimate: keep every 4th slice; thick: box slice profile")
    parser.add_argument("--post-processing", action="store_true",
                        help="also score residual back-projection and the INR/cubic mean")
    args = parser.parse_args()
    import torch

    nan = float("nan")
    torch.set_num_threads(args.threads)
    root = str(real_data_folder())
    found = [c for c in args.cases if os.path.isdir(os.path.join(root, c))]
    if not found:
        print(f"no real cases under {root} (set MCINR_REAL_DATA)", file=sys.stderr)
        return 1
    print(f"{args.protocol}: T1c x4 along {args.axes[0]}, FLAIR x4 along {args.axes[1]}\n")
    print("| case | method | PSNR strict T1c | PSNR strict FLAIR | SSIM strict T1c | "
          "SSIM strict FLAIR | banding T1c | banding FLAIR | PSNR between slices T1c | "
          "PSNR between slices FLAIR | epochs | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in found:
        for row in run_case(os.path.join(root, case), *CASES[case], epochs=args.epochs,
                            axes=tuple(args.axes), models=tuple(args.models),
                            seeds=tuple(args.seeds), post_processing=args.post_processing,
                            protocol=args.protocol, jtv=tuple(args.jtv), psf=args.psf,
                            jtv_epsilon=args.jtv_epsilon, psf_epochs=args.psf_epochs,
                            image_weights=args.image_weights,
                            overrides=dict(_setting(item) for item in args.set),
                            slice_thickness=args.slice_thickness):
            print(f"| {case} | {row['method']} | {row['psnr_strict_t1']:.2f} | "
                  f"{row['psnr_strict_flair']:.2f} | {row['ssim_strict_t1']:.4f} | "
                  f"{row['ssim_strict_flair']:.4f} | {row['banding_t1']:.2f} | "
                  f"{row['banding_flair']:.2f} | {row.get('psnr_unacquired_t1', nan):.2f} | "
                  f"{row.get('psnr_unacquired_flair', nan):.2f} | {row['epochs']} | "
                  f"{_seconds(row['seconds'])} |",
                  flush=True)
        truth = row  # the truth's banding is in every row
        print(f"| {case} | truth (detail along the removed axis: "
              f"{truth['detail_truth_t1']:.2f} / {truth['detail_truth_flair']:.2f}) | | | | | "
              f"{truth['banding_truth_t1']:.2f} | {truth['banding_truth_flair']:.2f} | | | | |",
              flush=True)
    return 0


def _setting(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` as (key, value), the value read as JSON where it parses."""
    key, _, text = item.partition("=")
    try:
        return key, json.loads(text)
    except ValueError:
        return key, text


def _seconds(value) -> str:
    return f"{value:.0f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())

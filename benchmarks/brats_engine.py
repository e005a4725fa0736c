"""Benchmark of the INR engine on the shared BraTS case (issue: the INR super-resolution engine).

t1c decimated x4 along S (an axial acquisition), t2f decimated x4 along A (a coronal one), full
240x240x155 size, evaluation mask = both isotropic images > 0 (as shared/data/README.md).  Every
method runs in its own process (so its peak RSS is its own) on the number of threads given
(default 2).  Prints a Markdown table; ``--markdown FILE`` also writes it.  The ``curve`` run
scores a fixed random subset of 2^18 mask voxels each epoch (strict PSNR) outside the timing.

    python benchmarks/brats_engine.py [--methods ...] [--threads 2] [--markdown out.md]

Methods: cubic, cubic-clamped, fast-split, fast-vanilla, fast-single, paper-1x and paper-10x
(the paper preset for the wall time of fast-split and 10 times that; paper-10x only when asked
for, it takes about 50 minutes), curve (fast-split without early stopping, strict PSNR every
epoch: which epoch MI picks against the best one), and thick-point / thick-psf (box-profile thick
slices, 10 epochs each, point model against the slice-profile model).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from common import real_data_folder

CASE = "brats-gli-00001-000"
ALL_METHODS = ["cubic", "cubic-clamped", "fast-split", "fast-vanilla", "fast-single", "curve",
               "thick-cubic-clamped", "thick-point", "thick-psf", "paper-1x", "paper-10x"]
DEFAULT_METHODS = ALL_METHODS[:-1]  # paper-10x alone takes about 50 min on 2 cores
THICK_EPOCHS = 10  # the point/PSF comparison: the PSF model costs psf_samples times more


def load_simulation(protocol: str = "decimate"):
    from mcinr_bids.core.images import load_volume
    from mcinr_bids.quality.evaluation import simulate_acquisitions

    folder = os.path.join(str(real_data_folder()), CASE)
    t1c = load_volume(os.path.join(folder, "BraTS-GLI-00001-000-t1c.nii.gz"))
    t2f = load_volume(os.path.join(folder, "BraTS-GLI-00001-000-t2f.nii.gz"))
    t1c.name, t2f.name = "t1c", "t2f"
    mask = (t1c.data > 0) & (t2f.data > 0)
    return simulate_acquisitions([t1c, t2f], ["S", "A"], protocol, 4, mask)


def run_method(method: str, time_limit: float | None) -> dict:
    """Run one method in this process; return its row."""
    import torch

    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.quality.evaluation import run_baseline, run_inr, score

    protocol = "thick" if method.startswith("thick") else "decimate"
    simulation = load_simulation(protocol)
    row: dict = {"method": method, "threads": torch.get_num_threads()}
    started = time.perf_counter()
    if method in ("cubic", "cubic-clamped", "thick-cubic-clamped"):
        predictions, seconds = run_baseline(method.removeprefix("thick-"), simulation)
        row.update(fit_seconds=0.0, total_seconds=seconds)
    else:
        callback = None
        if method.startswith("paper"):
            settings = settings_for_preset("paper", model="split", time_limit_seconds=time_limit)
        elif method == "curve":
            settings = settings_for_preset("fast", model="split", early_stopping=False)

            # strict PSNR every epoch on a fixed random subset of 2^18 mask voxels
            voxels = np.argwhere(simulation.mask)
            voxels = voxels[np.random.default_rng(0).permutation(len(voxels))[:2**18]]
            from mcinr_bids.core.geometry import world_coordinates

            world = world_coordinates(simulation.affine, voxels)
            truths = [t[tuple(voxels.T)] for t in simulation.truths]
            ranges = [(t[simulation.mask].min(), t[simulation.mask].max())
                      for t in simulation.truths]

            def callback(epoch, fitted):
                predicted = fitted.predict(world)
                return {f"psnr_strict_{n}": float(10 * np.log10(
                    (high - low) ** 2 / np.mean((predicted[:, i] - truth) ** 2)))
                    for i, (n, truth, (low, high)) in enumerate(
                        zip(simulation.names, truths, ranges))}
        else:
            model = method.split("-")[1] if method.startswith("fast") else "split"
            # "thick-psf" is the 2026-12-02 entry's Gaussian profile, 8 random points (RESULTS);
            # every other row the point model (psf given: the automatic choice is off)
            psf = ({"psf": True, "psf_profile": "gaussian", "psf_sampling": "random",
                    "psf_samples": 8} if method == "thick-psf" else {"psf": False})
            settings = settings_for_preset("fast", model=model, **psf)
            if method.startswith("thick"):
                settings.epochs = THICK_EPOCHS
        predictions, fitted = run_inr(settings, simulation, epoch_callback=callback)
        history = fitted.history
        train = sum(h["train_seconds"] for h in history)
        mi = sum(h["mi_seconds"] for h in history)
        row.update(fit_seconds=train + mi, total_seconds=time.perf_counter() - started,
                   epochs=len(history), selected_epoch=fitted.selected_epoch,
                   stop_reason=fitted.stop_reason, mi_share=mi / max(train + mi, 1e-9),
                   device=fitted.device)
        if method == "curve":
            row["history"] = history
    row.update(score(predictions, simulation))
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return row


def table(rows: list[dict]) -> str:
    names = ["t1c", "t2f"]
    header = ["method", "PSNR strict t1c", "PSNR strict t2f", "SSIM strict t1c",
              "SSIM strict t2f", "PSNR paper t1c", "PSNR paper t2f", "SSIM paper t1c",
              "SSIM paper t2f", "eps_MI t1c", "eps_MI t2f", "eps_MI joint", "epochs",
              "fit s", "fit+predict s", "peak RSS GB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"]]
        cells += [f"{row[f'psnr_strict_{n}']:.2f}" for n in names]
        cells += [f"{row[f'ssim_strict_{n}']:.4f}" for n in names]
        cells += [f"{row[f'psnr_paper_{n}']:.2f}" for n in names]
        cells += [f"{row[f'ssim_paper_{n}']:.4f}" for n in names]
        cells += [f"{row[k]:.3f}" for k in ("epsilon_mi_1", "epsilon_mi_2", "epsilon_mi_joint")]
        cells += [str(row.get("epochs", "")), f"{row['fit_seconds']:.0f}",
                  f"{row['total_seconds']:.0f}", f"{row['peak_rss_gb']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(row: dict) -> str:
    lines = ["| epoch | MI | PSNR strict t1c | PSNR strict t2f |", "|---|---|---|---|"]
    for h in row["history"]:
        lines.append(f"| {h['epoch']} | {h['mutual_information']:.4f} | "
                     f"{h['psnr_strict_t1c']:.2f} | {h['psnr_strict_t2f']:.2f} |")
    best = max(row["history"], key=lambda h: h["psnr_strict_t1c"] + h["psnr_strict_t2f"])
    lines.append(f"\nMI rule picks epoch {row['selected_epoch']}; best mean strict PSNR at "
                 f"epoch {best['epoch']}; MI evaluation took {100 * row['mi_share']:.2f} % of "
                 "the fit time.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=ALL_METHODS)
    parser.add_argument("--results-dir", default=os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "output"), help="one JSON per method is kept here")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the JSON of methods already run in --results-dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--time-limit", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(str(real_data_folder()), CASE)):
        print(f"no {CASE} under {real_data_folder()} (set MCINR_REAL_DATA)", file=sys.stderr)
        return 1
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_method(args.one, args.time_limit), default=float))
        return 0
    rows = []
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    os.makedirs(args.results_dir, exist_ok=True)
    for method in args.methods:
        saved = os.path.join(args.results_dir, f"{method}.json")
        if args.reuse and os.path.exists(saved):
            with open(saved) as handle:
                rows.append(json.load(handle))
            continue
        limit = None
        if method.startswith("paper"):
            reference = next((r for r in rows if r["method"] == "fast-split"), None)
            if reference is None:
                print(f"{method} needs fast-split first", file=sys.stderr)
                continue
            limit = reference["fit_seconds"] * (10 if method == "paper-10x" else 1)
        command = [sys.executable, __file__, "--one", method, "--threads", str(args.threads)]
        if limit is not None:
            command += ["--time-limit", str(limit)]
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
        if result.returncode:
            print(result.stderr, file=sys.stderr)
            return result.returncode
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        with open(saved, "w") as handle:
            json.dump(rows[-1], handle)
        print(f"done {method}: {rows[-1]['total_seconds']:.0f} s", file=sys.stderr, flush=True)
    output = [table(rows)]
    for row in rows:
        if row["method"] == "curve":
            output.append(curve_table(row))
    text = "\n\n".join(output)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

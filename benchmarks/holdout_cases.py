"""How well the ground-truth-free check (``--qc-holdout K``) tracks the true gain (issue 12,
item 6), on the shared real cases.

For each case (T1c x4 along S, FLAIR x4 along R, the protocol of shared/data/README.md): the
default INR (consistency step and, on thick slices, the JTV blend), JTV and clamped cubic are
scored against the isotropic truth (the true gain over cubic, strict PSNR), and the hold-out
check is run on the same simulated acquisitions without the truth (the gain it reports).

    python benchmarks/holdout_cases.py [--cases C ...] [--protocol thick] [--every 4]
        [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

from common import real_data_folder
from engine_cases import CASES
from unpaired_cases import load_case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--protocol", choices=("decimate", "thick"), default="thick")
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import numpy as np
    import torch

    from mcinr_bids.methods.inr import fit_inr, predict_on_grid
    from mcinr_bids.methods.inr.postprocessing import blend
    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.quality.evaluation import (
        consistent,
        run_baseline,
        score,
        simulate_acquisitions,
    )
    from mcinr_bids.quality.holdout import holdout_check

    torch.set_num_threads(args.threads)
    folder = real_data_folder()
    settings = settings_for_preset("fast", seed=args.seed, threads=args.threads)
    print(f"{args.protocol}, --qc-holdout {args.every}, seed {args.seed}: strict PSNR gain over "
          "clamped cubic (dB) against the truth, and on the held-out slices\n")
    print("| case | image | method | true PSNR | true gain | hold-out PSNR | hold-out gain | "
          "seconds (truth run + check) |")
    print("|---|---|---|---|---|---|---|---|")
    pairs = []
    for case in args.cases:
        t1, flair, mask = load_case(folder, case)
        simulation = simulate_acquisitions([t1, flair], ["S", "R"], args.protocol, 4, mask)
        started = time.perf_counter()
        grid = (simulation.truths[0].shape, simulation.affine)
        fitted = fit_inr(simulation.low_resolution, settings)
        inr, foreground = predict_on_grid(fitted, *grid)
        inr = consistent(settings, inr, grid, simulation.low_resolution, fitted.masks,
                         fitted.transforms, foreground)
        jtv, _ = run_baseline("jtv", simulation)
        cubic, _ = run_baseline("cubic-clamped", simulation)
        truth_scores = {"inr": score(blend(inr, jtv, settings.blend_weight, foreground),
                                     simulation),
                        "jtv": score(jtv, simulation), "cubic": score(cubic, simulation)}
        truth_seconds = time.perf_counter() - started
        started = time.perf_counter()
        rows = holdout_check(simulation.low_resolution, args.every, grid, masks=fitted.masks,
                             transforms=fitted.transforms, settings=settings)
        check_seconds = time.perf_counter() - started
        held = {(r["measure"], r["image"]): r["value"] for r in rows}
        for name in simulation.names:
            true_cubic = truth_scores["cubic"][f"psnr_strict_{name}"]
            held_cubic = held[("holdout_psnr_cubic", name)]
            for method in ("inr", "jtv"):
                true = truth_scores[method][f"psnr_strict_{name}"]
                held_out = held[(f"holdout_psnr_{method}", name)]
                pairs.append((true - true_cubic, held_out - held_cubic))
                print(f"| {case} | {name} | {method} | {true:.2f} | {true - true_cubic:+.2f} | "
                      f"{held_out:.2f} | {held_out - held_cubic:+.2f} | "
                      f"{truth_seconds:.0f} + {check_seconds:.0f} |", flush=True)
            print(f"| {case} | {name} | cubic | {true_cubic:.2f} | | {held_cubic:.2f} | | |",
                  flush=True)
    true, reported = np.array(pairs).T
    agree = int(np.sum(np.sign(true) == np.sign(reported)))
    correlation = np.corrcoef(true, reported)[0, 1]
    print(f"\nsign agreement {agree}/{len(pairs)}; Pearson r {correlation:.2f}; mean true gain"
          f" {true.mean():+.2f} dB, mean hold-out gain {reported.mean():+.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

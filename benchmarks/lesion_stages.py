"""Which stage of the default INR output gains (or loses) inside the lesion: one fit per case,
protocol and seed, then the output chain with each stage turned off in turn, scored in the
brain and inside the BraTS lesion (``OTMultiClass > 0``) against clamped cubic.

    python benchmarks/lesion_stages.py OUT.tsv [--cases pat0005 ...] [--protocols decimate]
        [--seeds 0 1 2] [--inr KEY=VALUE ...]

Rows: case, protocol, seed, variant (``cubic-clamped``, ``default``, ``no-consistency``,
``no-network``, ``network-1.0``, ``no-softening``, ``model-alone``) and strict PSNR in the
brain and inside the lesion per image.  The fit is the evaluation's (``run_inr``: the recipe
of the simulated acquisitions); only the post-processing differs between variants.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

DATA = os.environ.get("MCINR_REAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..",
                                                      "shared", "data", "real"))
IMAGES = ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz")
AXES = ("S", "R")  # where the truths have detail (the data's README)
#: the stage switches of each variant, over the recipe's decision
VARIANTS = {
    "default": {},
    "no-consistency": {"consistency_steps": 0},
    "no-network": {"through_plane_weight": 0.0},
    "network-1.0": {"through_plane_weight": 1.0},
    "no-softening": {"destripe": False},
    "model-alone": {"consistency_steps": 0, "through_plane_weight": 0.0, "destripe": False,
                    "jtv_blend": 0.0},
}


def scores(predictions, simulation) -> dict[str, float]:
    from mcinr_bids.quality import metrics

    row = {}
    for name, prediction, truth in zip(simulation.names, predictions, simulation.truths):
        row[f"brain_{name}"] = metrics.psnr(prediction, truth, simulation.mask, "strict")
        row[f"lesion_{name}"] = metrics.psnr(prediction, truth, simulation.mask, "strict",
                                             region=simulation.lesion)
    return row


def one_case(case: str, protocol: str, seed: int, overrides: dict | None = None) -> list[dict]:
    from mcinr_bids.core.images import load_mask, load_volume
    from mcinr_bids.methods.inr.postprocessing import inr_output
    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.quality.evaluation import run_baseline, run_inr, simulate_acquisitions

    folder = os.path.join(DATA, f"brats2013-{case}")
    volumes = [load_volume(os.path.join(folder, name)) for name in IMAGES]
    mask = load_mask(os.path.join(folder, "brainmask.nii.gz"), volumes[0])
    simulation = simulate_acquisitions(volumes, list(AXES), protocol, 4, mask)
    simulation.lesion = load_mask(os.path.join(folder, "OTMultiClass.nii.gz"), volumes[0])
    overrides = overrides or {}
    head = {"case": case, "protocol": protocol, "seed": seed,
            "inr": " ".join(f"{k}={v}" for k, v in overrides.items()) or "default"}
    cubic, _ = run_baseline("cubic-clamped", simulation)
    rows = [{**head, "variant": "cubic-clamped", **scores(cubic, simulation)}]
    start = time.perf_counter()
    _, fitted = run_inr(settings_for_preset("fast", seed=seed, **overrides), simulation)
    print(f"{case} {protocol} seed {seed}: fit {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    decided = fitted.settings
    grid = (simulation.truths[0].shape, simulation.affine)
    for variant, switches in VARIANTS.items():
        fitted.settings = dataclasses.replace(decided, **switches)
        outputs, _ = inr_output(fitted, grid, simulation.low_resolution)
        rows.append({**head, "variant": variant, **scores(outputs, simulation)})
        print("  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in rows[-1].items()), file=sys.stderr)
    fitted.settings = decided
    return rows


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the TSV to write (rows are appended per case)")
    parser.add_argument("--cases", nargs="+", default=["pat0005", "pat0006"])
    parser.add_argument("--protocols", nargs="+", default=["decimate", "thick"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--inr", nargs="+", default=[], metavar="KEY=VALUE",
                        help="INR settings over the fast preset (values read as TOML)")
    args = parser.parse_args(argv)
    import tomllib

    overrides = {key: tomllib.loads(f"v = {value}")["v"]
                 for key, value in (item.split("=", 1) for item in args.inr)}
    rows = []
    for seed in args.seeds:
        for case in args.cases:
            for protocol in args.protocols:
                rows += one_case(case, protocol, seed, overrides)
                pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False, float_format="%.3f")
    return 0


if __name__ == "__main__":
    sys.exit(main())

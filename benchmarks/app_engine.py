"""App = engine (issue 12 item 4): refit the inputs of an evaluation-mode app run with parts of
the app's preparation swapped for the engine's, and score each fit with both metrics.

The app (``evaluation_real.py --keep DIR``) fits the simulated LR images with the rigid
transforms its registrations estimated (identity in truth: the simulation does not move an
image) and the reference's brain mask carried onto each image; ``mcinr-fit`` / the engine
benchmarks use identity transforms and each image's automatic foreground.  Each variant fits
with the app node's own settings (seed, threads, preset) and is scored by the app's evaluation
(:func:`mcinr_bids.quality.evaluation.evaluate_subject`: each truth's foreground inside the output
foreground) and by the engine's (both truths > 0, as
:func:`mcinr_bids.quality.evaluation.simulate_acquisitions` makes it).

    python benchmarks/app_engine.py DIR --variants app identity auto engine [--threads 1]
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def app_inputs(keep: Path) -> tuple[dict, list[str]]:
    """The fit node's inputs of the (single-subject) app run kept in ``keep`` and the truths."""
    fit_inputs = next((keep / "work").glob("mcinr_wf/sub_*_wf/superres_wf/fit/_inputs.pklz"))
    with gzip.open(fit_inputs) as handle:
        inputs = pickle.load(handle)
    subject = fit_inputs.parts[-4].removesuffix("_wf").replace("sub_", "sub-")
    truths = [str(keep / "bids" / subject / "anat" / Path(f).name) for f in inputs["in_files"]]
    return inputs, truths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keep", type=Path, help="the --keep folder of evaluation_real.py")
    parser.add_argument("--variants", nargs="+", default=["identity", "auto"],
                        choices=("app", "identity", "auto", "engine"),
                        help="app: its transforms and masks; identity: identity transforms, "
                             "the app's masks; auto: the app's transforms, automatic masks; "
                             "engine: neither")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from mcinr_bids.core.images import load_volume
    from mcinr_bids.core.volumes import automatic_foreground_mask
    from mcinr_bids.methods.inr.settings import INRSettings
    from mcinr_bids.pipeline.reconstruct import load_subject, superresolve
    from mcinr_bids.quality import evaluation

    torch.set_num_threads(args.threads)
    inputs, truth_files = app_inputs(args.keep)
    settings = INRSettings.from_dict(dict(inputs["settings"]))
    settings.threads = args.threads
    volumes, masks, transforms = load_subject(
        inputs["in_files"], inputs["names"], [np.loadtxt(p) for p in inputs["to_reference"]],
        np.loadtxt(inputs["reference_to_output"]), inputs["brain_mask"])
    truths = [load_volume(path) for path in truth_files]
    both = np.logical_and.reduce([automatic_foreground_mask(t.data) for t in truths])
    names = [n.split("_")[-1] for n in inputs["names"]]
    for variant in args.variants:
        use_transforms = None if variant in ("identity", "engine") else transforms
        use_masks = None if variant in ("auto", "engine") else masks
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"app-engine-{variant}-") as folder:
            outputs = superresolve(volumes, settings, folder, masks=use_masks,
                                   transforms=use_transforms)
            fit_seconds = time.perf_counter() - started
            scores = {}
            for metric, truth_mask in (("app", None), ("engine", both)):
                # the engine's mask is both truths' foreground, whatever the truth
                evaluation.automatic_foreground_mask = (
                    automatic_foreground_mask if truth_mask is None
                    else lambda _truth, mask=truth_mask: mask)
                rows = evaluation.evaluate_subject(truth_files, inputs["in_files"],
                                                   {"inr": outputs["checkpoint"]}, names)
                scores[metric] = {(r["method"], r["image"]): r["value"] for r in rows
                                  if r["measure"] == "psnr_strict"}
        print(f"{variant}: epochs {outputs['epochs_run']}, fit {fit_seconds:.0f} s; " + "; ".join(
            f"{metric} metric " + ", ".join(
                f"{n} {s[('inr', n)]:.2f} (cubic {s[('cubic-clamped', n)]:.2f})" for n in names)
            for metric, s in scores.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

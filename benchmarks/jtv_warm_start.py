"""The INR/JTV blend with JTV started from cubic splines (the 2026-12-02 entry's default) or from
the INR's consistent output (the default since the 2026-12-02 entry), on the fits of an
evaluation-mode app run (``evaluation_real.py --protocol thick --keep DIR``): the same fitted
model, both blends, scored against the truths with the app's evaluation metric.

    python benchmarks/jtv_warm_start.py DIR [--subjects gli00001 ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import pickle
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keep", type=Path)
    parser.add_argument("--subjects", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import nibabel as nib
    import torch

    from mcinr_bids.core.images import load_volume
    from mcinr_bids.core.volumes import automatic_foreground_mask
    from mcinr_bids.methods.inr.postprocessing import blend
    from mcinr_bids.methods.inr.predict import load_checkpoint
    from mcinr_bids.methods.jtv import JTVSettings
    from mcinr_bids.quality import metrics
    from mcinr_bids.quality.evaluation import jtv_on_truth_grid, model_outputs

    torch.set_num_threads(args.threads)
    for node in sorted((args.keep / "work").glob("mcinr_wf/sub_*_wf/superres_wf/fit")):
        subject = node.parts[-3].removesuffix("_wf").replace("sub_", "sub-")
        if args.subjects and subject.removeprefix("sub-") not in args.subjects:
            continue
        with gzip.open(node / "_inputs.pklz") as handle:
            inputs = pickle.load(handle)
        model = load_checkpoint(str(next(node.glob("model.pt"))), device="cpu")
        truth_files = [str(args.keep / "bids" / subject / "anat" / Path(f).name)
                       for f in inputs["in_files"]]
        truths = [nib.load(p) for p in truth_files]
        volumes = [load_volume(p) for p in inputs["in_files"]]
        settings = JTVSettings(**dict(inputs["jtv_settings"]))
        started = time.perf_counter()
        alone = model_outputs(dataclasses.replace(model, settings=dataclasses.replace(
            model.settings, jtv_blend=0.0)), truths, volumes)
        outputs = {"INR (consistent)": alone}
        for label, start in (("cubic", None), ("INR", alone)):
            jtv = jtv_on_truth_grid(volumes, model.masks, model.transforms, truth_files[0],
                                    settings, start=start)
            outputs[f"JTV from {label}"] = jtv
            outputs[f"blend, JTV from {label}"] = blend(alone, jtv, 0.5)
        data = [np.asanyarray(t.dataobj, dtype=np.float32) for t in truths]
        masks = [automatic_foreground_mask(d) for d in data]
        for label, images in outputs.items():
            print(f"{subject} | {label} | " + " | ".join(
                f"{metrics.psnr(i, d, m, 'strict'):.2f}" for i, d, m in zip(images, data, masks))
                + " | " + " | ".join(f"{metrics.ssim(i, d, m, 'strict'):.4f}"
                                     for i, d, m in zip(images, data, masks)), flush=True)
        print(f"{subject}: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

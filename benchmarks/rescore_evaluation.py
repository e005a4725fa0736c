"""Re-score a kept evaluation-mode app run with the current code, without refitting: each
subject's ``evaluate`` node run again on its recorded inputs (the fitted model, the app's
registrations and masks), its metrics written over the participant's metrics table, then the
group level (``evaluation_real.py --summary-only``) rebuilds Table 1 from them.  For a change of
the scoring (e.g. the jtv row in each image's own world, 2026-12-03).

    python benchmarks/rescore_evaluation.py DIR [--subjects gli00001 ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keep", type=Path, help="the --keep folder of evaluation_real.py")
    parser.add_argument("--subjects", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from nipype.interfaces.base import isdefined

    from mcinr_bids.interfaces.evaluation import EvaluateSuperresolution

    torch.set_num_threads(args.threads)
    nodes = sorted((args.keep / "work").glob("mcinr_wf/sub_*_wf/superres_wf/evaluate"))
    for node in nodes:
        subject = node.parts[-3].removesuffix("_wf").replace("sub_", "sub-")
        if args.subjects and subject.removeprefix("sub-") not in args.subjects:
            continue
        with gzip.open(node / "_inputs.pklz") as handle:
            inputs = {k: v for k, v in pickle.load(handle).items() if isdefined(v)}
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            result = EvaluateSuperresolution(**inputs).run(cwd=folder)
            table = args.keep / "out" / subject / "anat" / f"{subject}_desc-superres_metrics.tsv"
            shutil.copyfile(result.outputs.out_metrics, table)
        print(f"{subject}: re-scored in {time.perf_counter() - started:.0f} s -> {table}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

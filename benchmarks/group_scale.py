"""Group level at cohort scale: aggregate 1000 generated participants' metrics (target <= 30 s).

    python benchmarks/group_scale.py [--subjects 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate(output: Path, subjects: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for index in range(1, subjects + 1):
        label = f"{index:04d}"
        anat = output / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        rows = ["measure\tmethod\timage\tother_image\tvalue"]
        for contrast in ("T1w", "FLAIR"):
            rows.append(f"resimulation_rmse\tn/a\tsub-{label}_{contrast}\tn/a\t"
                        f"{rng.normal(20, 2):.4f}")
            rows.append(f"resimulation_psnr\tn/a\tsub-{label}_{contrast}\tn/a\t"
                        f"{rng.normal(50, 1.5):.4f}")
        rows.append(f"mutual_information\tn/a\tsub-{label}_T1w\tsub-{label}_FLAIR\t"
                    f"{rng.normal(0.35, 0.03):.4f}")
        (anat / f"sub-{label}_desc-superres_metrics.tsv").write_text("\n".join(rows) + "\n")
        (output / f"sub-{label}.html").write_text("<html></html>")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000)
    args = parser.parse_args()
    from mcinr_bids.reports.group import aggregate_metrics

    with tempfile.TemporaryDirectory(prefix="mcinr-group-") as folder:
        output = Path(folder)
        generate(output, args.subjects)
        started = time.perf_counter()
        target = aggregate_metrics(output)
        seconds = time.perf_counter() - started
        rows = sum(1 for _ in open(target)) - 1
        outliers = (output / "group_report.html").read_text().count('href="sub-')
    print("| subjects | rows | seconds | target |\n|---|---|---|---|")
    print(f"| {args.subjects} | {rows} | {seconds:.1f} | <= 30 s "
          f"{'✓' if seconds <= 30 else '✗'} |")
    print(f"(report links: {outliers})")
    return 0 if seconds <= 30 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The evaluation mode on the three shared real cases laid out as one BIDS dataset.

sub-gli00001 (t1c, t2f), sub-pat0005 and sub-pat0006 (T1c, FLAIR) become T1w and FLAIR images;
``mcinr-bids ... participant --simulate-lowres T1w:S FLAIR:R`` simulates x4 acquisitions (issue
12's protocol: T1w along S, FLAIR along R, axes along which both truths have detail;
``--axes S A`` gives the 2026-11-22 entry' protocol), runs the pipeline (native space, 1 mm) and
scores against the originals; the group level then writes the Table-1 summary, printed here as
Markdown.

    python benchmarks/evaluation_real.py [--keep DIR] [--nprocs 2] [--threads 1]
        [--protocol decimate|thick] [--axes S R] [--cases gli00001 ...] [--seed 0]
        [--ablation] [--registration header|rigid]

The shared cases are co-registered by their provider (one 1 mm grid), so the default is
``--registration header``; ``rigid`` measures what the app's ANTs registration of those
co-registered originals costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import real_data_folder

HERE = Path(__file__).resolve().parent
CASES = {
    "gli00001": ("brats-gli-00001-000", "BraTS-GLI-00001-000-t1c.nii.gz",
                 "BraTS-GLI-00001-000-t2f.nii.gz"),
    "pat0005": ("brats2013-pat0005", "T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz"),
    "pat0006": ("brats2013-pat0006", "T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz"),
}


def write_dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "shared real cases", "BIDSVersion": "1.10.0", "DatasetType": "raw",
         "License": "see each case's licence", "Authors": ["BraTS"]}))
    (root / "README").write_text("The shared BraTS cases as BIDS (mcinr-bids benchmark).\n")
    (root / "participants.tsv").write_text(
        "participant_id\n" + "\n".join(f"sub-{s}" for s in CASES) + "\n")
    for subject, (folder, t1w, flair) in CASES.items():
        anat = root / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for source, suffix in ((t1w, "T1w"), (flair, "FLAIR")):
            target = anat / f"sub-{subject}_{suffix}.nii.gz"
            if not target.exists():
                os.symlink(real_data_folder() / folder / source, target)
            (anat / f"sub-{subject}_{suffix}.json").write_text(json.dumps({}))
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="--omp-nthreads")
    parser.add_argument("--axes", nargs=2, default=["S", "R"], metavar=("T1W_AXIS", "FLAIR_AXIS"))
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--seed", type=int, default=0, help="--random-seed")
    parser.add_argument("--ablation", action="store_true", help="--evaluate-ablation")
    parser.add_argument("--protocol", default="decimate", choices=("decimate", "thick"))
    parser.add_argument("--registration", default="header", choices=("header", "rigid"))
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--summary-only", action="store_true",
                        help="only the group level and the tables (participants already ran)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="mcinr-eval-real-"))
    bids = write_dataset(root / "bids")
    output, work = root / "out", root / "work"
    started = time.perf_counter()
    participant = [sys.executable, "-m", "mcinr_bids.cli.run", str(bids), str(output),
                   "participant", "-w", str(work), "--simulate-lowres",
                   f"T1w:{args.axes[0]}", f"FLAIR:{args.axes[1]}",
                   "--simulate-protocol", args.protocol, "--participant-label", *args.cases,
                   "--random-seed", str(args.seed), "--output-space", "native",
                   "--nprocs", str(args.nprocs), "--omp-nthreads", str(args.threads),
                   "--registration", args.registration,
                   "--skip-bids-validation", *(["--evaluate-ablation"] if args.ablation else [])]
    code = 0 if args.summary_only else subprocess.run(participant, check=False).returncode
    wall = time.perf_counter() - started
    subprocess.run([sys.executable, "-m", "mcinr_bids.cli.run", str(bids), str(output),
                    "group"], check=False)
    summary = pd.read_csv(output / "group_desc-evaluation_metrics.tsv", sep="\t")
    per_subject = []
    for path in sorted(output.glob("sub-*/**/*_desc-superres_metrics.tsv")):
        table = pd.read_csv(path, sep="\t", na_values="n/a")
        strict = table[table["measure"] == "psnr_strict"]
        for row in strict.itertuples():
            per_subject.append({"subject": path.name.split("_")[0], "image": row.image,
                                "method": row.method, "psnr_strict": row.value})
    lines = [f"Evaluation mode on {len(args.cases)} real cases ({args.protocol}, x4: T1w along "
             f"{args.axes[0]}, FLAIR along {args.axes[1]}), seed {args.seed}, native space "
             f"1 mm, --registration {args.registration}, {args.nprocs} processes x "
             f"{args.threads} threads: "
             f"participant exit code {code}, wall {wall / 60:.1f} min", "",
             summary.to_markdown(index=False, floatfmt=".3f"), "",
             pd.DataFrame(per_subject).pivot_table(index=["subject", "image"],
                                                   columns="method",
                                                   values="psnr_strict").to_markdown(
                                                       floatfmt=".2f")]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the BIDS App on the shared BraTS case (issue: the BIDS App).

The case is laid out as a BIDS dataset: t1c decimated x4 along S as an axial T1w
(``sub-00001_ce-gadolinium_T1w``), t2f decimated x4 along A as a coronal FLAIR.  A full
participant run (fast preset, 1 mm output in the MNI template space found offline, 2 processes)
is timed; peak RSS is that of the largest process (the workflow's own or a worker's).  Per-node
times come from Nipype's result files in the work folder.

    python benchmarks/bids_app_brats.py [--nprocs 2] [--output-space MNI152NLin2009cAsym]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
from common import real_data_folder

HERE = Path(__file__).resolve().parent
CASE = "brats-gli-00001-000"


def write_bids_case(root: Path) -> Path:
    """The BraTS case as BIDS: decimated t1c (axial T1w) and t2f (coronal FLAIR)."""
    from mcinr_bids.core.geometry import voxel_axis
    from mcinr_bids.quality.simulation import decimate

    folder = real_data_folder() / CASE
    anat = root / "sub-00001" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "BraTS-GLI-00001-000, simulated thick slices", "BIDSVersion": "1.10.0",
         "DatasetType": "raw", "License": "CC-BY-4.0", "Authors": ["BraTS 2023"]}))
    (root / "README").write_text("BraTS case with t1c and t2f decimated x4 (mcinr-bids "
                                 "benchmark).\n")
    (root / "participants.tsv").write_text("participant_id\nsub-00001\n")
    for source, name, letter in (("t1c", "sub-00001_ce-gadolinium_T1w", "S"),
                                 ("t2f", "sub-00001_FLAIR", "A")):
        image = nib.load(folder / f"BraTS-GLI-00001-000-{source}.nii.gz")
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        low, affine = decimate(data, image.affine, voxel_axis(image.affine, letter), 4)
        out = nib.Nifti1Image(low, affine)
        out.set_qform(affine, 1)
        out.set_sform(affine, 1)
        out.header.set_xyzt_units("mm", "sec")
        out.to_filename(anat / f"{name}.nii.gz")
        (anat / f"{name}.json").write_text(json.dumps({"MagneticFieldStrength": 3}))
    return root


def node_seconds(work_dir: Path) -> dict[str, float]:
    """Seconds per workflow node (map nodes summed over their items) from Nipype's results."""
    from nipype.utils.filemanip import loadpkl

    totals: dict[str, float] = defaultdict(float)
    for result in work_dir.rglob("result_*.pklz"):
        node = result.parent
        if node.parent.name == "mapflow":
            continue  # the map node's own result holds the items' runtimes
        try:
            loaded = loadpkl(result)
        except Exception:  # noqa: BLE001 - a partial result is just skipped
            continue
        runtimes = loaded.runtime if isinstance(loaded.runtime, list) else [loaded.runtime]
        seconds = sum(getattr(r, "duration", 0.0) or 0.0 for r in runtimes if r is not None)
        totals[node.name] += seconds
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--output-space", default="MNI152NLin2009cAsym")
    parser.add_argument("--keep", type=Path, help="keep the dataset, outputs and work here")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--method", choices=("inr", "jtv"), default="inr")
    args = parser.parse_args()
    if not (real_data_folder() / CASE).is_dir():
        print(f"no {CASE} under {real_data_folder()}; set MCINR_REAL_DATA", file=sys.stderr)
        return 1
    root = args.keep or Path(tempfile.mkdtemp(prefix="mcinr-brats-app-"))
    bids_dir = write_bids_case(root / "bids")
    output_dir, work_dir = root / "out", root / "work"
    command = [sys.executable, "-m", "mcinr_bids.cli.run", str(bids_dir), str(output_dir),
               "participant", "-w", str(work_dir), "--nprocs", str(args.nprocs),
               "--omp-nthreads", str(args.nprocs), "--output-space", args.output_space,
               "--method", args.method]
    started = time.perf_counter()
    completed = subprocess.run(command, check=False)
    wall = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    nodes = node_seconds(work_dir)
    desc, record = ("jtv", "JTV") if args.method == "jtv" else ("superres", "INR")
    sidecar = next(output_dir.rglob(f"*desc-{desc}_FLAIR.json"), None)
    fit = json.loads(sidecar.read_text())[record] if sidecar else {}
    lines = [f"BIDS App on {CASE} (t1c x4 S as axial T1w, t2f x4 A as coronal FLAIR), fast "
             f"preset, method {args.method}, {args.nprocs} processes, output "
             f"{args.output_space} at 1 mm",
             "", "| measure | value |", "|---|---|",
             f"| exit code | {completed.returncode} |",
             f"| wall time | {wall:.0f} s ({wall / 60:.1f} min) |",
             f"| peak RSS (largest process) | {peak_gb:.2f} GB |",
             f"| epochs (iterations) run / selected | "
             f"{fit.get('EpochsRun', fit.get('Iterations'))} / {fit.get('SelectedEpoch')} |",
             f"| fit seconds (engine) | {fit.get('FitSeconds')} |",
             "", "| node | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in nodes.items()]
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())

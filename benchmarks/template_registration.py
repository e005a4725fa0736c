"""The template registration on the shared real cases, far from the template's origin.

Each case is written as the app's inputs (its T1c decimated x4 along S as the axial reference,
its FLAIR x4 along R, both keeping the files' corner origins, the brain ~17 cm from (0, 0, 0));
``pat0005-centred`` is pat0005 with its in-brain mean subtracted (a z-scored brain that is
negative over much of its volume: the intensity-weighted centre lies outside the head).  The
app's own preprocessing workflow (:func:`~mcinr_bids.workflows.anatomical.init_anat_preproc_wf`:
N4, brain mask, registrations, ``registration_qc``) runs on them in three modes: the default
(2 ITK threads), ``--omp-nthreads 1`` and ``--sloppy``; each in its own process (ITK reads its
thread count once).  Printed: the checks' numbers (Dice of the reference's brain with the
template's brain mask, centre distance, share outside the grid, each image's Dice on the
reference) and the seconds of the template registration node.

    python benchmarks/template_registration.py [--cases pat0005 ...] [--modes default ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from common import real_data_folder

CASES = {
    "gli": ("brats-gli-00001-000", "BraTS-GLI-00001-000-t1c.nii.gz",
            "BraTS-GLI-00001-000-t2f.nii.gz"),
    "pat0005": ("brats2013-pat0005", "T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz"),
    "pat0005-centred": ("brats2013-pat0005", "T1c_subtrMeanDivStd.nii.gz",
                        "Flair_subtrMeanDivStd.nii.gz"),
    "pat0006": ("brats2013-pat0006", "T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz"),
}
MODES = {"default": {"omp_nthreads": 2, "quick": False},
         "one-thread": {"omp_nthreads": 1, "quick": False},
         "sloppy": {"omp_nthreads": 2, "quick": True}}


def write_inputs(case: str, folder: Path) -> list[str]:
    """The case's T1w (T1c x4 along S) and FLAIR (x4 along R) with their own affines."""
    from mcinr_bids.core.geometry import voxel_axis
    from mcinr_bids.quality.simulation import decimate

    name, t1c, flair = CASES[case]
    source = real_data_folder() / name
    paths = []
    for file, suffix, letter in ((t1c, "T1w", "S"), (flair, "FLAIR", "R")):
        image = nib.load(source / file)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        if case.endswith("-centred"):
            brain = data > data.min()
            data = np.where(brain, data - data[brain].mean(), data.min()).astype(np.float32)
        low, affine = decimate(data, image.affine, voxel_axis(image.affine, letter), 4)
        path = folder / f"sub-{case.replace('-', '')}_{suffix}.nii.gz"
        nib.Nifti1Image(low, affine).to_filename(path)
        paths.append(str(path))
    return paths


def run_one(case: str, mode: str, folder: Path) -> dict:
    """The app's preprocessing workflow on one case in one mode; its checks and timing."""
    import csv

    from mcinr_bids.pipeline.templates import OutputSpace, nilearn_template
    from mcinr_bids.workflows.anatomical import init_anat_preproc_wf

    images = write_inputs(case, folder)
    t1w, mask = nilearn_template(str(folder / "templates"))
    space = OutputSpace("MNI152NLin2009aSym", t1w, mask, source="nilearn")
    workflow = init_anat_preproc_wf(
        images=images, reference=0, bias_correction=True, skull_strip="auto", space=space,
        seed=0, quick=MODES[mode]["quick"], omp_nthreads=MODES[mode]["omp_nthreads"],
        names=[Path(p).name.split(".")[0] for p in images], label=case)
    workflow.base_dir = str(folder / "work")
    graph = workflow.run(plugin="Linear")
    nodes = {node.name: node for node in graph.nodes()}
    qc = nodes["registration_qc"].result.outputs
    with open(qc.out_tsv, newline="") as handle:
        rows = {(row["measure"], row["image"]): float(row["value"])
                for row in csv.DictReader(handle, delimiter="\t")}
    runtime = nodes["register_to_template"].result.runtime
    reasons = qc.reasons if isinstance(qc.reasons, list) else []
    return {"case": case, "mode": mode, "status": qc.status, "reasons": reasons,
            "rows": {f"{m}:{i}": v for (m, i), v in rows.items()},
            "template_seconds": round(runtime.duration, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--one", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="append each result to this JSON-lines file")
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(prefix="mcinr-template-") as folder:
            print("RESULT " + json.dumps(run_one(*args.one, Path(folder))), flush=True)
        return 0
    results = []
    for case in args.cases:
        for mode in args.modes:
            threads = str(MODES[mode]["omp_nthreads"])
            completed = subprocess.run(
                [sys.executable, __file__, "--one", case, mode], capture_output=True, text=True,
                env={**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": threads})
            lines = [line for line in completed.stdout.splitlines()
                     if line.startswith("RESULT ")]
            if not lines:
                print(completed.stdout[-2000:], completed.stderr[-4000:], file=sys.stderr)
                results.append({"case": case, "mode": mode, "status": "FAILED"})
                continue
            result = json.loads(lines[-1][len("RESULT "):])
            results.append(result)
            if args.json:
                with args.json.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
            rows = result["rows"]
            template = {k.split(":")[0].removeprefix("registration_template_"): v
                        for k, v in rows.items() if k.startswith("registration_template_")}
            images = [f"{v:.3f}" for k, v in rows.items()
                      if k.startswith("registration_image_dice")]
            print(f"| {case} | {mode} | {template.get('dice', float('nan')):.3f} | "
                  f"{template.get('centre_distance_mm', float('nan')):.1f} | "
                  f"{template.get('outside_fraction', float('nan')):.4f} | "
                  f"{', '.join(images)} | {result['template_seconds']:.0f} | "
                  f"{result['status']} |", flush=True)
    return 0 if all(r["status"] != "FAILED" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

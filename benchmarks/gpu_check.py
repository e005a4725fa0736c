"""The one-shot GPU check of issue 13 (run it where CUDA exists; never run in CI).

1. The engine on brats-gli-00001-000 (t1c x4 along S, t2f x4 along R, decimation) with the
   fast preset, then the paper preset for its full 50 epochs (no early stopping): fit time,
   peak GPU memory (torch's allocator), strict PSNR next to the CPU numbers of RESULTS.md.
2. Two subjects through ``mcinr-bids ... participant --n-gpu-procs 2`` (the same case twice,
   skull stripping skipped, native space): wall time of the pair and each fit's time, so
   that concurrent fits can be compared with a lone one (goal: each <= 1.3x).
GPU utilisation is sampled with ``nvidia-smi`` every second while everything runs.

    python benchmarks/gpu_check.py [--skip-paper] [--out gpu_check]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bids_app_brats import CASE, write_bids_case
from common import real_data_folder

#: the CPU figures to compare with (benchmarks/RESULTS.md, 2 cores, seed 0)
CPU_REFERENCE = {"fast": (32.55, 25.71, "~260 s"), "paper": (None, None, "2 of 50 epochs in "
                                                               "the fast preset's time")}


def sample_utilisation(samples: list, stop: threading.Event) -> None:
    """GPU utilisation (%) and memory used (MiB) every second, from nvidia-smi."""
    while not stop.is_set():
        try:
            line = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True,
                timeout=5).stdout.splitlines()[0]
            samples.append([float(v) for v in line.split(",")])
        except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
            pass
        stop.wait(1.0)


def engine_row(preset: str) -> dict:
    import torch

    from mcinr_bids.core.images import load_volume
    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.quality.evaluation import run_inr, score, simulate_acquisitions

    folder = real_data_folder() / CASE
    volumes = [load_volume(str(folder / f"BraTS-GLI-00001-000-{c}.nii.gz")) for c in
               ("t1c", "t2f")]
    volumes[0].name, volumes[1].name = "t1", "flair"
    mask = (volumes[0].data > 0) & (volumes[1].data > 0)
    simulation = simulate_acquisitions(volumes, ["S", "R"], "decimate", 4, mask)
    overrides = {"early_stopping": False, "epochs": 50} if preset == "paper" else {}
    settings = settings_for_preset(preset, device="cuda", seed=0, **overrides)
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    predictions, fitted = run_inr(settings, simulation)
    seconds = time.perf_counter() - started
    row = score(predictions, simulation)
    return {"preset": preset, "epochs": len(fitted.history),
            "fit_seconds": round(fitted.fit_seconds, 1), "fit_and_predict_seconds":
            round(seconds, 1), "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
            "psnr_strict_t1": round(row["psnr_strict_t1"], 2),
            "psnr_strict_flair": round(row["psnr_strict_flair"], 2)}


def app_pair(root: Path) -> dict:
    bids = write_bids_case(root / "bids")
    second = bids / "sub-00002"
    shutil.copytree(bids / "sub-00001", second)
    for path in second.rglob("sub-00001*"):
        path.rename(path.with_name(path.name.replace("sub-00001", "sub-00002")))
    (bids / "participants.tsv").write_text("participant_id\nsub-00001\nsub-00002\n")
    command = [sys.executable, "-m", "mcinr_bids.cli.run", str(bids), str(root / "out"),
               "participant", "-w", str(root / "work"), "--n-gpu-procs", "2", "--nprocs", "8",
               "--omp-nthreads", "4", "--device", "cuda", "--output-space", "native",
               "--skull-strip", "skip", "--skip-bids-validation"]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    fits = [json.loads(p.read_text())["INR"]["FitSeconds"]
            for p in sorted((root / "out").rglob("*desc-superres_FLAIR.json"))]
    return {"exit_code": completed.returncode, "wall_seconds": round(wall, 1),
            "fit_seconds_each": fits, "log_tail": completed.stderr[-1500:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this check runs on a GPU machine only", file=sys.stderr)
        return 1
    if not (real_data_folder() / CASE).is_dir():
        print(f"no {CASE} under {real_data_folder()}; set MCINR_REAL_DATA", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_utilisation, args=(samples, stop), daemon=True)
    sampler.start()
    results = {"device": torch.cuda.get_device_name(0), "engine": []}
    for preset in ("fast",) + (() if args.skip_paper else ("paper",)):
        results["engine"].append(engine_row(preset))
        print(json.dumps(results["engine"][-1]), flush=True)
    with tempfile.TemporaryDirectory(prefix="mcinr-gpu-pair-") as folder:
        results["pair"] = app_pair(Path(folder))
    stop.set()
    sampler.join(timeout=5)
    busy = [s[0] for s in samples]
    results["gpu_utilisation_mean_percent"] = round(sum(busy) / len(busy), 1) if busy else None
    results["gpu_memory_used_max_mib"] = max((s[1] for s in samples), default=None)
    print("| preset | epochs | fit s | fit + 1 mm prediction s | peak GPU GB | PSNR T1c | "
          "PSNR FLAIR | CPU (RESULTS.md) |\n|---|---|---|---|---|---|---|---|")
    for row in results["engine"]:
        cpu = CPU_REFERENCE[row["preset"]]
        print(f"| {row['preset']} | {row['epochs']} | {row['fit_seconds']} | "
              f"{row['fit_and_predict_seconds']} | {row['peak_gpu_gb']} | "
              f"{row['psnr_strict_t1']} | {row['psnr_strict_flair']} | {cpu} |")
    pair = results["pair"]
    print(f"\ntwo fits through mcinr-bids --n-gpu-procs 2: exit {pair['exit_code']}, wall "
          f"{pair['wall_seconds']} s, fit seconds {pair['fit_seconds_each']}; GPU utilisation "
          f"mean {results['gpu_utilisation_mean_percent']} %, memory used max "
          f"{results['gpu_memory_used_max_mib']} MiB")
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if pair["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

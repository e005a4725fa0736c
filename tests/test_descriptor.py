"""descriptor.json: generated from the parser, valid for Boutiques, and parsed back by it."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mcinr_bids.cli.descriptor import build_descriptor
from mcinr_bids.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTOR = ROOT / "descriptor.json"
INVOCATIONS = [
    {"bids_dir": "/data", "output_dir_name": "/out", "analysis_level": "participant"},
    {"bids_dir": "/data", "output_dir_name": "/out", "analysis_level": "participant",
     "participant_label": ["01", "02"], "session_label": ["pre"], "sloppy": True,
     "nprocs": 2, "omp_nthreads": 1, "output_space": "native", "output_resolution": 0.8,
     "contrasts": ["T1w", "FLAIR"], "model": "single", "psf": True, "device": "cpu",
     "work_dir": "/scratch/work", "random_seed": 7, "verbose_count": True,
     "skip_bids_validation": True, "mem_gb": 12, "n_gpu_procs": 1,
     "simulate_lowres": ["T1w:S", "FLAIR:A"], "evaluate_ablation": True},
    # (bosh substitutes [OUTPUT_DIR] from the first input that carries it: output_dir_name)
    {"bids_dir": "/data", "output_dir_name": "/out", "analysis_level": "group"},
]


def test_committed_descriptor_is_generated_from_the_parser():
    assert json.loads(DESCRIPTOR.read_text()) == build_descriptor()


def test_every_argument_is_described():
    described = {entry["id"] for entry in build_descriptor()["inputs"]}
    for action in build_parser()._actions:
        if action.dest in ("help", "version"):
            continue
        assert action.dest in described or action.dest == "output_dir", action.dest


def bosh(*arguments):
    executable = shutil.which("bosh")
    if executable is None:
        pytest.fail("bosh (boutiques) is not installed: pip install -e '.[dev]'")
    return subprocess.run([executable, *arguments], capture_output=True, text=True,
                          check=False)


def test_bosh_validates_as_a_bids_app():
    result = bosh("validate", "--bids", str(DESCRIPTOR))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BIDS validation OK" in result.stdout + result.stderr


@pytest.mark.parametrize("invocation", INVOCATIONS)
def test_simulated_command_lines_parse(tmp_path, invocation):
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(invocation))
    result = bosh("exec", "simulate", str(DESCRIPTOR), "-i", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(text for text in result.stdout.splitlines() if "mcinr-bids" in text)
    command = line.split(";", 1)[1].strip()
    arguments = shlex.split(command)
    assert arguments[0] == "mcinr-bids"
    parsed = build_parser().parse_args(arguments[1:])
    assert str(parsed.bids_dir) == "/data" and str(parsed.output_dir) == "/out"
    assert parsed.analysis_level == invocation["analysis_level"]
    for key, value in invocation.items():
        if key in ("bids_dir", "output_dir_name", "participant_level_analysis_dir"):
            continue
        got = getattr(parsed, key)
        expected = 1 if key == "verbose_count" else value
        assert (str(got) if key == "work_dir" else got) == expected, key

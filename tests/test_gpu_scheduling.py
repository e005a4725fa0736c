"""GPU scheduling, tested on CPU with a faked CUDA device count (issue 13, item 4)."""

from __future__ import annotations

import pytest
import torch

from mcinr_bids.core.device import select_device
from mcinr_bids.methods.inr.settings import INRSettings
from mcinr_bids.pipeline.reconstruct import estimate_memory_gb
from mcinr_bids.workflows.fit import init_superres_wf


@pytest.fixture
def three_gpus(monkeypatch):
    free = {0: 10e9, 1: 30e9, 2: 20e9}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (free[index], 80e9))
    return free


def test_fits_go_to_the_least_loaded_gpu(three_gpus):
    assert select_device("auto") == torch.device("cuda", 1)
    assert select_device("cuda") == torch.device("cuda", 1)
    three_gpus[2] = 50e9  # another fit took memory on GPU 1
    assert select_device("auto") == torch.device("cuda", 2)
    assert select_device("cpu") == torch.device("cpu")


def test_one_gpu_is_cuda_0(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("auto") == torch.device("cuda", 0)


def _fit_node(use_gpu: bool, method: str = "inr"):
    workflow = init_superres_wf(names=["sub-01_T1w", "sub-01_FLAIR"], reference=0,
                                settings=INRSettings().to_dict(), resolution=1.0,
                                omp_nthreads=4, use_gpu=use_gpu, mem_gb=2.5, method=method)
    return workflow.get_node("reconstruct" if method == "jtv" else "fit")


def test_a_gpu_fit_takes_one_gpu_slot():
    """nipype charges min(n_procs, n_gpu_procs) GPU slots per job: a GPU fit asks n_procs 1,
    so --n-gpu-procs N runs N fits at once; a CPU fit asks --omp-nthreads processors."""
    gpu = _fit_node(True)
    assert gpu.is_gpu_node() and gpu.n_procs == 1 and gpu.mem_gb == 2.5
    cpu = _fit_node(False)
    assert not cpu.is_gpu_node() and cpu.n_procs == 4
    jtv = _fit_node(True, "jtv")  # JTV runs on the CPU: no GPU slot
    assert not jtv.is_gpu_node() and jtv.n_procs == 4


def test_memory_estimate_follows_the_grid(low_resolution_files):
    small = estimate_memory_gb(low_resolution_files, resolution=2.0)
    fine = estimate_memory_gb(low_resolution_files, resolution=1.0)
    assert 1.0 < small < fine


def test_deepbet_counts_as_a_gpu_job():
    from mcinr_bids.pipeline.templates import OutputSpace
    from mcinr_bids.workflows.anatomical import init_anat_preproc_wf

    space = OutputSpace(name="native", t1w=None, mask=None, source="native")
    for use_gpu in (True, False):
        workflow = init_anat_preproc_wf(images=["a_T1w.nii.gz", "a_FLAIR.nii.gz"], reference=0,
                                        bias_correction=False, skull_strip="auto", space=space,
                                        seed=0, quick=True, use_gpu=use_gpu)
        assert workflow.get_node("brain_mask").is_gpu_node() is use_gpu


def test_the_evaluation_runs_on_the_fit_device(tmp_path):
    """Evaluation mode: the models are evaluated on the fit's device, so the node is a GPU job
    (one slot) when the fit is; JTV's evaluation stays on the CPU."""
    truths = [tmp_path / "t1.nii.gz", tmp_path / "flair.nii.gz"]
    for path in truths:
        path.write_bytes(b"")

    def evaluate_node(use_gpu: bool, method: str = "inr"):
        settings = {**INRSettings().to_dict(), "device": "cuda"}
        workflow = init_superres_wf(names=["sub-01_T1w", "sub-01_FLAIR"], reference=0,
                                    settings=settings, resolution=1.0, omp_nthreads=4,
                                    use_gpu=use_gpu, mem_gb=2.5, method=method,
                                    truth_files=[str(p) for p in truths])
        return workflow.get_node("evaluate")

    gpu = evaluate_node(True)
    assert gpu.is_gpu_node() and gpu.n_procs == 1 and gpu.inputs.device == "cuda"
    cpu = evaluate_node(False)
    assert not cpu.is_gpu_node() and cpu.n_procs == 4 and cpu.inputs.device == "cpu"
    assert not evaluate_node(True, "jtv").is_gpu_node()

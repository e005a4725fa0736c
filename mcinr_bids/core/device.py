"""Which torch device a fit or a prediction runs on: ``auto`` picks CUDA (the least-loaded
GPU), then MPS, then the CPU."""

from __future__ import annotations

import numpy as np
import torch

from mcinr_bids.core.volumes import InputError


def least_loaded_cuda() -> torch.device:
    """The visible CUDA device with the most free memory (``cuda:0`` when there is one): fits
    that MultiProc runs at once (``--n-gpu-procs``) spread over several GPUs."""
    count = torch.cuda.device_count()
    if count <= 1:
        return torch.device("cuda", 0)
    free = [torch.cuda.mem_get_info(index)[0] for index in range(count)]
    return torch.device("cuda", int(np.argmax(free)))


def select_device(requested: str = "auto") -> torch.device:
    """``cuda`` (the least-loaded GPU), then ``mps``, then ``cpu`` for ``auto``; otherwise the
    device asked for."""
    if requested == "auto":
        if torch.cuda.is_available():
            return least_loaded_cuda()
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; "
                         "use --device auto or cpu.")
    if requested == "cuda":
        return least_loaded_cuda()
    return torch.device(requested)

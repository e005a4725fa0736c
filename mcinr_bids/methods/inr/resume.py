"""Resumable fits: the whole training state every few epochs, atomically, so that a fit killed
by preemption or a wall-time limit continues where it was on the rerun (with the same inputs
and settings) instead of starting from epoch 0."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os

import numpy as np
import torch

from mcinr_bids.core.io import atomic_write

FORMAT = 1


def fingerprint(volumes, masks, transforms, settings) -> str:
    """A digest of everything the fit depends on (data, masks, transforms, settings); a
    checkpoint of another fit is never resumed."""
    digest = hashlib.blake2b(digest_size=16)
    # the state's layout: 2 = grid tables over the sampled voxels (2026-12-03), 3 = dense
    # tables as volumes (F, Z, Y, X), samples in memory order; a state left by an earlier
    # version is never loaded
    digest.update(b"layout 3")
    digest.update(json.dumps(settings.to_dict(), sort_keys=True, default=str).encode())
    for volume, mask, transform in zip(volumes, masks, transforms):
        digest.update(np.ascontiguousarray(volume.data).tobytes())
        digest.update(np.asarray(volume.affine, dtype=np.float64).tobytes())
        digest.update(np.packbits(np.asarray(mask, dtype=bool)).tobytes())
        if transform is not None:
            digest.update(np.asarray(transform, dtype=np.float64).tobytes())
    return digest.hexdigest()


def save_state(path: str, *, key: str, epoch: int, fitted, optimiser, scheduler, generator,
               mi_values: list[float], selected_state: dict | None, elapsed: float) -> None:
    """Write the training state after ``epoch`` to ``path`` (atomically)."""
    state = {
        "format": FORMAT, "key": key, "epoch": epoch, "elapsed": elapsed,
        "model": fitted.model.state_dict(), "optimiser": optimiser.state_dict(),
        "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "history": fitted.history, "mi_values": mi_values, "selected_state": selected_state,
        "selected_epoch": fitted.selected_epoch, "stopped_early": fitted.stopped_early,
        "stop_reason": fitted.stop_reason,
    }
    atomic_write(path, lambda temporary: torch.save(state, temporary))


def load_state(path: str | None, key: str) -> dict | None:
    """The saved state at ``path`` when it belongs to this fit (same ``key``), else ``None``."""
    if not path or not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a truncated or foreign file: start afresh
        return None
    if state.get("format") != FORMAT or state.get("key") != key:
        return None
    return state


def restore_state(state: dict, *, fitted, optimiser, scheduler, generator) -> None:
    """Put a saved state back into the model, optimiser, scheduler and random generators."""
    fitted.model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    fitted.history = list(state["history"])
    fitted.selected_epoch = state["selected_epoch"]
    fitted.stopped_early = state["stopped_early"]
    fitted.stop_reason = state["stop_reason"]
    fitted.resumed_from_epoch = state["epoch"]


def resume_or_start(path: str | None, key: str, *, fitted, optimiser, scheduler, generator
                    ) -> tuple[int, float, list[float], dict | None]:
    """``(first epoch, seconds already spent, MI values, selected state)`` of a fit: continued
    from the state at ``path`` when it is this fit's, else from the start."""
    state = load_state(path, key)
    if state is None:
        return 1, 0.0, [], None
    restore_state(state, fitted=fitted, optimiser=optimiser, scheduler=scheduler,
                  generator=generator)
    return state["epoch"] + 1, state["elapsed"], list(state["mi_values"]), state["selected_state"]


class StateInUseError(ValueError):
    """Another live process is fitting with the same resumable state."""


@contextlib.contextmanager
def exclusive_state(path: str | None):
    """Hold ``path``'s lock (``<path>.lock``, an advisory ``flock`` the system releases when
    its holder dies, even by ``kill -9``) for a fit; :class:`StateInUseError` when a live
    process holds it: a resume never trusts a state another process is writing."""
    if not path:
        yield
        return
    lock_path = f"{path}.lock"
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise StateInUseError(
                f"{os.path.dirname(path) or '.'}: another live process (pid {holder}) is "
                "fitting this subject in this work folder; wait for it to end or stop it, then "
                "run again.") from error
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:  # removed while still held: no one else can hold this file meanwhile
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
    finally:
        handle.close()

"""The workflow's worker processes live no longer than the process that started them.

Nipype's MultiProc workers are children of a forkserver, not of the ``mcinr-bids`` process: a
``kill -9`` of that process alone (a scheduler's or a user's kill of the PID) left a worker
fitting for minutes and rewriting the fit's resumable state, which the rerun then resumed from.
:class:`WatchedMultiProc` starts each worker with a watchdog thread that ends the worker (SIGTERM,
as a scheduler would) as soon as the main process is gone, and ends at once on SIGINT, as
on SIGTERM, so that the fit stays resumable.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from nipype.pipeline.plugins.multiproc import MultiProcPlugin, process_initializer

#: how often a worker looks at the main process (s)
WATCH_SECONDS = 1.0


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def watch_main_process(main_pid: int, every: float = WATCH_SECONDS) -> threading.Thread:
    """A daemon thread that sends this process SIGTERM once ``main_pid`` is gone."""
    def watch():
        while process_alive(main_pid):
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="mcinr-watch-main", daemon=True)
    thread.start()
    return thread


def watched_initializer(cwd: str, main_pid: int) -> None:
    """Nipype's worker set-up, then the watchdog; SIGINT (Ctrl-C reaches the whole process
    group) ends a worker at once as SIGTERM does.  As a Python ``KeyboardInterrupt`` it
    unwound the running node, and nipype, taking it for the node's failure, removed the
    node's unfinished-hash file, so the rerun emptied the node folder and fitted again from
    epoch 1 instead of resuming."""
    process_initializer(cwd)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    watch_main_process(main_pid)


class WatchedMultiProc(MultiProcPlugin):
    """Nipype's MultiProc plugin whose workers stop when the main process dies."""

    def __init__(self, plugin_args=None):
        super().__init__(plugin_args=plugin_args)
        context = (plugin_args or {}).get("mp_context")
        # the parent's pool has started no worker yet (they start on the first submission)
        self.pool.shutdown(wait=False)
        self.pool = ProcessPoolExecutor(
            max_workers=self.processors, initializer=watched_initializer,
            initargs=(self._cwd, os.getpid()),
            mp_context=multiprocessing.get_context(context) if context else None)


def stop_on_interrupt(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    """Ctrl-C (SIGINT) in the main process: stop at once, exit code 130.  The workers end by
    the same SIGINT (the terminal sends it to the whole process group) or by their watchdog;
    the work folder keeps every finished step and the fit's resumable state, so the rerun
    resumes.  Leaving through Python's exit handlers instead waits on the worker pool's
    threads and locks, which a KeyboardInterrupt can leave held (a run in CI never exited)."""
    try:
        os.write(2, b"mcinr-bids: interrupted; rerun with the same work folder to resume.\n")
    finally:
        os._exit(130)

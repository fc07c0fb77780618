"""Child processes that end with the process that started them, however it ends.

SIGKILL (``kill -9``, the out-of-memory killer, a scheduler's hard limit) gives a process no chance to stop its
children. Left behind, a synthetic set's rendering workers (SIGINT and SIGTERM blocked) waited forever for work,
and a benchmark's worker went on training, competing with the next run for the cores and skewing its timings.
Linux can send a child a signal when its parent ends (``PR_SET_PDEATHSIG``); elsewhere nothing is done.
"""
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _prctl():
    # resolved in the parent, before any fork: a child between fork and exec should not have to load a library
    try:
        return ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith('linux') else None
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None


_PRCTL = _prctl()


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """Have this process sent ``signum`` when the thread that started it ends; end it at once (exit status 1)
    when its parent ``parent`` (a pid) has already ended. Call it first thing in the child: as a process pool's
    ``initializer``, or ``subprocess.Popen``'s ``preexec_fn`` (with ``functools.partial``; the setting outlives
    ``exec``). Only where the parent starts its children from the thread that outlives them (its main thread)."""
    if _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0 and os.getppid() != parent:
        os._exit(1)

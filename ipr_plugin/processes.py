"""Child processes that end with the process that started them, however it ends.

SIGKILL (``kill -9``, the out-of-memory killer, a scheduler's hard limit) gives a process no chance to stop its
children. Left behind, a synthetic set's rendering workers (SIGINT and SIGTERM blocked) waited forever for work,
and a benchmark's worker went on training, competing with the next run for the cores and skewing its timings.
Linux can send a child a signal when its parent ends (``PR_SET_PDEATHSIG``); elsewhere nothing is done.
"""
import ctypes
import errno
import os
import shutil
import signal
import sys
from typing import List, Sequence

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
    ``initializer``; for a command, see :func:`command_dying_with_this_process`. Only where the parent starts its
    children from the thread that outlives them (its main thread)."""
    if _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0 and os.getppid() != parent:
        os._exit(1)


def command_dying_with_this_process(argv: Sequence[str], signum: int = signal.SIGKILL) -> List[str]:
    """``argv``, to be started (``subprocess.Popen``) so that it is sent ``signum`` when the thread that starts
    it ends, however this process ends; it keeps the pid, session, signal dispositions and environment ``Popen``
    gives it (but under the C locale, where the Python in between sets ``LC_CTYPE``, as the Python commands this
    package starts would themselves). ``argv`` itself where Linux's ``PR_SET_PDEATHSIG`` is missing, or where
    this module was imported from a zip. Start it from the thread that outlives it.

    Raises:
        FileNotFoundError: ``argv[0]`` is no command here (as ``Popen`` would say, not the wrapper's traceback).
    """
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(errno.ENOENT, 'no such command', argv[0])
    if _PRCTL is None or not os.path.isfile(__file__):  # (imported from a zip: no file to run as the wrapper)
        return list(argv)
    # this very file, run by a fresh interpreter in between (see _exec_dying): subprocess's ``preexec_fn`` would run
    # Python in the forked child of a process with threads (CUDA's, a pytest's), where a lock another thread held at
    # the fork (malloc's, the import lock) is never released. ``-I``: nothing of the environment or the working
    # folder is read, and the file imports only the standard library
    return [sys.executable, '-I', os.path.abspath(__file__), str(os.getpid()), str(int(signum)), *argv]


def _exec_dying(parent: int, signum: int, argv: Sequence[str]) -> None:
    # Python ignores these at start, and an ignored signal stays ignored across exec
    for name in ('SIGPIPE', 'SIGXFSZ'):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    die_with_parent(parent, signum)
    os.execvp(argv[0], list(argv))


if __name__ == '__main__':
    _exec_dying(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])

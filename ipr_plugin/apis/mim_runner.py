"""Run ``mim train`` / ``mim test`` (mmpose's own tools) as subprocesses and read their COCO metrics."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Set, Union

from ..paths import child_env, work_root


# Lines of output quoted in a failure message: enough for a traceback and the log lines before it.
TAIL_LINES = 80

# mmengine logs evaluation results as ``coco/AP: 0.0123  coco/AP .5: 0.2000  ...`` (keys may contain a space).
# a value may also be nan or inf (float() reads both): dropping it would read as "not evaluated"
_COCO_METRIC = re.compile(r'(coco/[\w]+(?: [.\w()]+)?):\s+(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-?nan|-?inf)\b')


# The children of run_command still running, whichever thread started them (kill_running).
_RUNNING: Set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


class MimError(RuntimeError):
    """A mim subprocess failed or ran out of time; the message ends with its output's tail."""


class MimTimeout(MimError):
    """A mim subprocess was stopped at its timeout (whatever it wrote before that is still on disk)."""


def mim_executable() -> str:
    """The ``mim`` beside the running interpreter (the virtual environment's), else the one on ``PATH``."""
    beside = Path(sys.executable).with_name('mim')
    return str(beside) if beside.exists() else 'mim'


def _tail(output: str, lines: int = TAIL_LINES) -> str:
    return '\n'.join(output.splitlines()[-lines:])


def _mim_env(extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
    env = child_env()  # for custom_imports, also where the plugin is not pip-installed
    env.setdefault('PYTHONUNBUFFERED', '1')
    env.update(extra or {})
    return env


def run_mim(args: Sequence[Union[str, os.PathLike]],
            cwd: Union[str, Path, None] = None,
            timeout: float = 120,
            env: Optional[Mapping[str, str]] = None,
            check: bool = True,
            on_line: Optional[Callable[[str], None]] = None) -> subprocess.CompletedProcess:
    """Run ``mim *args`` with stdout and stderr captured together (see :func:`run_command`)."""
    return run_command([mim_executable(), *map(str, args)], cwd, timeout, _mim_env(env), check, on_line)


def run_command(cmd: Sequence[Union[str, os.PathLike]],
                cwd: Union[str, Path, None] = None,
                timeout: float = 120,
                env: Optional[Mapping[str, str]] = None,
                check: bool = True,
                on_line: Optional[Callable[[str], None]] = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` with stdout and stderr captured together.

    The child gets its own session so that on timeout the whole tree (``torch.distributed.launch`` and its
    ranks, not just mim) is killed, also when it hangs without printing anything. With ``check``, a non-zero
    exit or a timeout (:class:`MimTimeout`) raises :class:`MimError` quoting the command and the tail of the
    output. ``on_line`` sees each output line as it arrives (progress). ``cwd`` defaults to :func:`work_root`.
    """
    cmd = [str(c) for c in cmd]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(cwd or work_root()), env=None if env is None else dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    lines = []
    # Killing the child at the deadline closes its output, which ends the read below even if it never prints.
    expired = threading.Event()
    timer = threading.Timer(timeout, lambda: (expired.set(), kill_session(proc)))
    timer.daemon = True
    timer.start()
    # The same when the child itself ends (killed, or crashed) while what it started still holds its output
    # open (dataloader workers of a killed train.py): the read would otherwise wait for them.
    threading.Thread(target=lambda: (proc.wait(), kill_session(proc)), daemon=True).start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip('\n'))
        proc.wait()
    finally:
        timer.cancel()
        kill_session(proc)  # whatever the child left running in its session (or this process interrupted)
        proc.stdout.close()
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    output = ''.join(lines)
    if expired.is_set():
        raise MimTimeout(f'timed out after {timeout:.0f} s: {" ".join(cmd)}\n--- output tail ---\n{_tail(output)}')
    result = subprocess.CompletedProcess(cmd, proc.returncode, output, None)
    if check and result.returncode != 0:
        raise MimError(f'exit status {result.returncode} after {time.monotonic() - start:.0f} s: '
                       f'{" ".join(cmd)}\n--- output tail ---\n{_tail(output)}')
    return result


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the session (process group) of a child started with ``start_new_session=True``, if anything of it
    is left: the child, or what it started (dataloader workers, distributed ranks)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_running() -> None:
    """Kill the sessions of every child that :func:`run_command` has running, in any thread: a study running
    several rows at once stops them all when it is stopped (each thread then sees its child's output end)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        kill_session(proc)


def parse_coco_metrics(stdout: str) -> Dict[str, float]:
    """The ``coco/...`` metrics of the last evaluation logged in ``stdout`` (empty if there is none)."""
    metrics: Dict[str, float] = {}
    for line in stdout.splitlines():
        found = dict((key, float(value)) for key, value in _COCO_METRIC.findall(line))
        if found:
            metrics = found
    return metrics


# fields of mmengine's interval lines that a progress line leaves out: the loss terms and metrics are what to watch,
# and the time left (eta, kept, first)
_TIMING_FIELDS = frozenset(('base_lr', 'eta', 'time', 'data_time', 'memory', 'grad_norm'))
# Iter(train) [  10/1000], Epoch(val) [1][4/4]; the epoch right-aligned to max_epochs' width: Epoch(train)  [6][1/24]
_LOOP_HEAD = re.compile(r'^(\S+)\s+((?:\[[^\]]*\])+)')
_FIELD = re.compile(r'\s*([^\s:][^:]*?):\s+(\S+)')  # key (spaces allowed: "coco/AP (M)"): value


def progress_line(line: str) -> str:
    """mmengine's log line ``line`` shortened for a progress display: its message alone (no date or logger),
    without the timing fields (``time``, ``data_time``, ``memory``, ...); every other field whole, where cutting the
    line at a width hid the last loss terms (``debias_capped``) and metrics (``coco/AR``). mmengine's estimate of
    the time left (``eta``, training lines) comes first."""
    message = line.split(' - mmengine - INFO - ')[-1].strip()
    head = _LOOP_HEAD.match(message)
    found = _FIELD.findall(message[head.end() if head else 0:])
    fields = [f'{key}: {value}' for key, value in found if key == 'eta']
    fields += [f'{key}: {value}' for key, value in found if key not in _TIMING_FIELDS]
    return '  '.join(([f'{head.group(1)} {head.group(2)}'] if head else []) + fields)


def stop_session(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the session of ``proc`` (started with ``start_new_session=True``), give it ``grace`` seconds to
    clean up (kill the sessions it started itself, write a partial report), then SIGKILL what is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    kill_session(proc)

"""Command lines of the tools whose arguments are not parsed in their API's module.

Each module's ``main(argv=None, prog=None)`` is what ``tools/<name>.py`` runs, what ``python -m
ipr_plugin.cli.<name>`` runs, and (in a wheel, which has no tools/) the console script ``ipr-<name>`` setup.py
installs. The benchmark, the accuracy study, the background-share table and the GPU measurements keep their
``main`` beside their code: :mod:`ipr_plugin.benchmark`, :mod:`ipr_plugin.apis.accuracy_study`,
:mod:`ipr_plugin.apis.background_share`, :mod:`ipr_plugin.apis.gpu_measurements`. Those that record their
command in ``BENCHMARKS.md`` (the benchmark, the study) write it as :func:`command_line` tells.
"""
import functools
import os
import os.path as osp
import shlex
import signal
import sys
import threading
import warnings
from typing import Callable, Optional, Sequence, TypeVar

Main = TypeVar('Main', bound=Callable[..., Optional[int]])

# the package's folder: a script in it was run as ``python -m``
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.realpath(__file__)))


def invocation(script: str, tool: str) -> str:
    """How the tool ``tool`` (its module, e.g. ``'ipr_plugin.benchmark'``) was started, as far as this process's
    ``sys.argv[0]`` (``script``) tells, written so that a reader can run it again: ``python -m <tool>``, its
    console script (``ipr-benchmark``), or ``python`` and its ``tools/`` script's path (relative when under the
    working folder). Anything else started this process (a Python prompt, ``python -c``, a notebook, a test
    runner calling ``main``): ``python -m <tool>``."""
    name = tool.rsplit('.', 1)[-1]
    if script.endswith('.py'):
        real = osp.realpath(script)
        if real.startswith(_PACKAGE_DIR + os.sep):
            module = osp.relpath(real[:-len('.py')], osp.dirname(_PACKAGE_DIR)).replace(os.sep, '.')
            if module in (tool, f'{tool}.__main__'):
                return f'python -m {tool}'
        elif osp.basename(script) == f'{name}.py':
            if osp.isabs(script) and script.startswith(os.getcwd() + os.sep):
                script = osp.relpath(script)
            return 'python ' + shlex.quote(script)
    elif osp.basename(script) == 'ipr-' + name.replace('_', '-'):
        return osp.basename(script)
    return f'python -m {tool}'


def command_line(argv: Sequence[str], prog: str) -> str:
    """The command as typed: ``prog`` (see :func:`invocation`) and its arguments ``argv``, quoted for a shell."""
    return f'{prog} {shlex.join(argv)}'.rstrip()


def hide_pkg_resources_notice() -> None:
    """Ignore setuptools' "pkg_resources is deprecated" warning in this process: mmengine imports pkg_resources
    (resolving ``package::`` config names, checking installed packages), and the notice says nothing that a user
    of these tools could act on. Every tool calls this first (through :func:`tool_main`)."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


class Terminated(SystemExit):
    """SIGTERM arrived (:func:`exit_on_sigterm`); exit status 143."""


def _terminate(signum, frame) -> None:
    raise Terminated(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``timeout``, a job scheduler, a parent's time limit) into :class:`Terminated`, a SystemExit, in
    the main thread, so that the ``finally`` blocks that kill the children's sessions run instead of leaving them
    on the GPU."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def tool_main(name: str) -> Callable[[Main], Main]:
    """Decorator for the ``main(argv=None, ...)`` of the tool ``name``: setuptools' notice hidden
    (:func:`hide_pkg_resources_notice`) and SIGTERM a :class:`Terminated` while it runs (:func:`exit_on_sigterm`;
    the handler before it is put back after), so that the tool's ``finally`` blocks stop what it started (loader
    workers, training sessions). Run as a program (``argv`` None: ``tools/<name>.py``, a console script), Ctrl-C
    or SIGTERM ends it with one line, ``<name>: interrupted`` or ``<name>: terminated``, and exit status 130 or
    143 (a shell's 128 + the signal) instead of a traceback; called with ``argv`` from Python, the exception
    propagates to the caller, whose Ctrl-C it is."""
    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Optional[Sequence[str]] = None, *args, **kwargs):
            hide_pkg_resources_notice()
            in_main_thread = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGTERM) if in_main_thread else None
            exit_on_sigterm()
            try:
                return main(argv, *args, **kwargs)
            except KeyboardInterrupt:
                if argv is not None:
                    raise
                print(f'\n{name}: interrupted', file=sys.stderr, flush=True)  # after the terminal's ^C
                return 128 + signal.SIGINT
            except Terminated as stop:
                if argv is not None:
                    raise
                print(f'{name}: terminated', file=sys.stderr, flush=True)
                return stop.code
            finally:
                if in_main_thread and previous is not None:
                    signal.signal(signal.SIGTERM, previous)
        return run  # type: ignore[return-value]
    return wrap

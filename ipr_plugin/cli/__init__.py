"""Command lines of the tools whose arguments are not parsed in their API's module.

Each module's ``main(argv=None, prog=None)`` is what ``tools/<name>.py`` runs, what ``python -m
ipr_plugin.cli.<name>`` runs, and (in a wheel, which has no tools/) the console script ``ipr-<name>`` setup.py
installs. The benchmark, the accuracy study, the background-share table and the GPU measurements keep their
``main`` beside their code: :mod:`ipr_plugin.benchmark`, :mod:`ipr_plugin.apis.accuracy_study`,
:mod:`ipr_plugin.apis.background_share`, :mod:`ipr_plugin.apis.gpu_measurements`. Those that record their
command in ``BENCHMARKS.md`` (the benchmark, the study) write it as :func:`command_line` tells.
"""
import os
import os.path as osp
import shlex
import sys
from typing import Optional, Sequence

# the package's folder: a script in it was run as ``python -m``
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.realpath(__file__)))


def invocation(script: str) -> str:
    """How a command was started, as far as its ``sys.argv[0]`` (``script``) tells, written so that a reader can
    run it again: ``python -m ipr_plugin.<module>`` for a module of this package, the installed console script's
    name (``ipr-benchmark``), or ``python`` and the script's path (relative when under the working folder)."""
    if not script.endswith('.py'):
        return osp.basename(script)
    real = osp.realpath(script)
    if real.startswith(_PACKAGE_DIR + os.sep):
        module = osp.relpath(real[:-len('.py')], osp.dirname(_PACKAGE_DIR)).replace(os.sep, '.')
        return 'python -m ' + (module[:-len('.__main__')] if module.endswith('.__main__') else module)
    if osp.isabs(script) and script.startswith(os.getcwd() + os.sep):
        script = osp.relpath(script)
    return 'python ' + shlex.quote(script)


def command_line(argv: Sequence[str], prog: Optional[str] = None) -> str:
    """The command as typed: ``prog`` (default: :func:`invocation` of this process's ``sys.argv[0]``) and its
    arguments ``argv``, quoted for a shell."""
    return f'{prog or invocation(sys.argv[0])} {shlex.join(argv)}'.rstrip()

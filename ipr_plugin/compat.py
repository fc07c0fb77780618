"""The installed OpenMMLab stack checked against :data:`ipr_plugin.version.SUPPORTED` before anything imports it.

Outside that range the plugin fails deep inside an import (``cannot import name 'OKSLoss'`` from an mmpose 1.1),
and loaded through a config's ``custom_imports`` mmengine turns any ``ImportError`` into "Failed to import custom
modules ... You should set PYTHONPATH", which sends the user after the wrong problem. The check raises a
``RuntimeError`` (which mmengine passes on) naming what is installed and what is needed.
"""
import re
from importlib import metadata
from typing import Dict, Optional, Tuple

from .version import SUPPORTED

__all__ = ['release', 'version_problems', 'check_versions']


_STAGES = (('dev', -4), ('a', -3), ('b', -2), ('rc', -1), ('pre', -1))


def release(version: str) -> Tuple[int, ...]:
    """``'2.1.0'`` -> ``(2, 1, 0, 0, 0)``: major, minor, patch, stage, its number. A pre-release sorts before its
    release (``'2.0.0rc4'`` -> ``(2, 0, 0, -1, 4)``; dev < a < b < rc); a post-release, a fourth number and a local
    suffix (``'+cu121'``) count as the release itself."""
    match = re.match(r'(\d+(?:\.\d+)*)[.\-_]?([a-z]*)(\d*)', version.strip().lower())
    if match is None:
        raise ValueError(f'not a version: {version!r}')
    numbers = [int(n) for n in match.group(1).split('.')][:3]
    numbers += [0] * (3 - len(numbers))
    stage = next((rank for prefix, rank in _STAGES if match.group(2).startswith(prefix)), 0)
    return (*numbers, stage, int(match.group(3) or 0) if stage else 0)


def _installed(name: str) -> Optional[str]:
    """The installed version of ``name``; None where it is not installed, ``''`` where that cannot be told."""
    try:
        return metadata.version(name) or ''
    except metadata.PackageNotFoundError:  # importable without pip's records (a source tree on PYTHONPATH)
        try:
            return str(getattr(__import__(name), '__version__', ''))
        except ImportError:
            return None
        except Exception:  # noqa: BLE001 - a package that fails its own import: that import will say why
            return ''


def version_problems(found: Dict[str, Optional[str]]) -> Dict[str, str]:
    """Package name -> what is wrong, for each package of ``found`` (name -> installed version, None: not
    installed) outside :data:`~ipr_plugin.version.SUPPORTED`; packages not listed there, and versions that cannot be
    read (``''``, ``'unknown'``), are not checked. Below the upper bound means below its release and its
    pre-releases, as pip reads ``<2.2.0``."""
    problems = {}
    for name, version in found.items():
        if name not in SUPPORTED:
            continue
        low, high = SUPPORTED[name]
        if version is None:
            problems[name] = f'{name} is not installed'
            continue
        try:
            installed = release(version)
        except ValueError:
            continue
        if not (release(low) <= installed and installed[:3] < release(high)[:3]):
            problems[name] = f'{name} {version} is installed'
    return problems


def check_versions(names: Tuple[str, ...] = ('mmengine', 'mmcv', 'mmpose')) -> None:
    """Raise ``RuntimeError`` unless each of ``names`` is installed in its supported range."""
    problems = version_problems({name: _installed(name) for name in names})
    if problems:
        needed = ' '.join(f'"{name}>={SUPPORTED[name][0]},<{SUPPORTED[name][1]}"' for name in problems)
        mmcv = ' (mmcv built with its ops: see the README, "Environment")' if 'mmcv' in problems else ''
        raise RuntimeError(f'ipr_plugin: {"; ".join(problems.values())}, and it needs {needed}{mmcv}')

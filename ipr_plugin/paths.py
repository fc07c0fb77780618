"""Where the package finds things: the checkout it lives in, and the configs an OpenMMLab package installs."""
import copy
import errno
import importlib.util
import os
import os.path as osp
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

from .config_checks import error_text

if TYPE_CHECKING:
    from mmengine.config import Config

ConfigLike = Union[str, Path, 'Config']

# The checkout: configs/, tools/, data/ and BENCHMARKS.md sit there in an editable install (the tools put their own
# checkout first on sys.path, so this is the checkout of the tool that runs). In an installed wheel it is
# site-packages, which is no place for outputs: see work_root().
REPO_ROOT = Path(__file__).resolve().parents[1]
IN_CHECKOUT = (REPO_ROOT / 'setup.py').is_file()

# The plugin's configs, where OpenMMLab packages keep theirs (so ``ipr_plugin::rel`` names them, as ``mmpose::rel``
# names mmpose's): in a checkout a link to configs/, in a wheel a copy (setup.py's package_data).
CONFIG_ROOT = Path(__file__).resolve().parent / '.mim' / 'configs'

# The configs the measuring tools put side by side, as a user names them on the command line: mmpose's own IPR
# config (the anchor every ratio is taken against) and ours.
MMPOSE_IPR_CONFIG = 'mmpose::body_2d_keypoint/integral_regression/coco/ipr_res50_8xb64-210e_coco-256x256.py'
OURS_CONFIG = 'configs/ipr_res50_8xb64-210e_coco-256x256.py'
OURS_FAST_CONFIG = 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'
OURS_FAST_COMPILE_CONFIG = 'configs/ipr_res50_fast-compile-8xb64-210e_coco-256x256.py'


def plugin_config(*rel: str) -> Path:
    """The plugin's config ``rel`` (e.g. ``'synthetic/ipr_res18-w16_1xb32-60e_synthetic-128x128.py'``, or its
    parts): the file in the checkout's configs/, or the copy a wheel installed."""
    return CONFIG_ROOT.joinpath(*rel).resolve()


def work_root() -> Path:
    """Where outputs go by default (data/, work_dirs/, BENCHMARKS.md): the checkout, or the current folder when the
    package is installed from a wheel."""
    return REPO_ROOT if IN_CHECKOUT else Path.cwd()


def child_env() -> Dict[str, str]:
    """This process's environment for a child that must import this very package: the checkout first on
    ``PYTHONPATH`` (mmpose's tools/*.py run with their own folder as sys.path[0], where the package is not)."""
    env = dict(os.environ)
    if IN_CHECKOUT:
        env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get('PYTHONPATH')) if p)
    return env


def installed_config(path: str) -> str:
    """``package::rel`` (mim's form, as in ``_base_``) -> the file ``rel`` under that installed package's
    ``.mim/configs``; any other path as it is. Raises ``FileNotFoundError`` naming a package not installed."""
    if '::' not in path:
        return path
    package, rel = path.split('::', 1)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f'config {path}: package {package!r} is not installed')
    return osp.join(spec.submodule_search_locations[0], '.mim', 'configs', rel)


def link_note(path: str) -> str:
    """Why ``path``, which does not exist, still shows in a listing, for a "not found" message: a symbolic link
    whose target is missing, or one in a loop of links (``os.path.exists`` says False for both, and "not found"
    alone sends the user looking for a file that ``ls`` shows); '' for a path that is simply absent."""
    if not osp.islink(path) or osp.exists(path):
        return ''
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return ' (a symbolic link in a loop of links)'
    return f' (a symbolic link to {os.readlink(path)}, which does not exist)'


def require_file(path: str, what: str) -> None:
    """Raise ``FileNotFoundError`` naming ``what`` (``'config'``, ``'annotation file'``, ...) unless ``path`` is a
    file (``IsADirectoryError`` for a folder)."""
    if osp.isdir(path):
        raise IsADirectoryError(f'{what} {path} is a folder, not a file')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}{link_note(path)}')


def load_config(config: ConfigLike, cfg_options: Optional[dict] = None) -> 'Config':
    """An mmengine ``Config`` from a file, a ``package::path`` name or a ``Config`` (copied), with overrides.

    ``package::rel/path.py`` (e.g. ``mmdet::rtmdet/rtmdet_m_8xb32-300e_coco.py``) is the config installed
    with that OpenMMLab package, ``<package>/.mim/configs/rel/path.py``: ``Config.fromfile`` only resolves
    such names inside ``_base_``, and mmengine's ``get_config`` may try to pip-install the package.

    Raises:
        FileNotFoundError: the file (or the package) is missing; the message names the path.
        ValueError: the file cannot be read as a config (Python with a syntax error or that fails when run, JSON or
            YAML that does not parse), or ``cfg_options`` cannot be applied to it; the message names the file.
    """
    from mmengine.config import Config

    if isinstance(config, Config):
        cfg = copy.deepcopy(config)  # Config.copy is shallow: overrides would leak into the caller's
    else:
        path = installed_config(str(config))
        require_file(path, 'config')
        cfg = _read_config(path)
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # an index past a list's end, ...
            raise ValueError(f'config {cfg.filename or config}: --cfg-options (cfg_options) cannot be applied: '
                             f'{error_text(error)}') from error
    return cfg


def _read_config(path: str) -> 'Config':
    """``Config.fromfile(path)``, its errors naming ``path``: mmengine parses a Python config from a string (a
    syntax error's file is ``<unknown>``), a YAML one from ``<file>``, and json's "Expecting value" names no file.
    An ``OSError`` (a ``_base_`` missing, a suffix mmengine does not read) keeps its type."""
    from mmengine.config import Config

    try:
        return Config.fromfile(path)
    except OSError as error:
        if path in str(error):
            raise
        raise type(error)(f'config {path}: {error}') from error
    except SyntaxError as error:  # before Exception: its str() names '<unknown>' as the file
        raise ValueError(f'config {path} is not valid Python: {error.msg} (line {error.lineno})') from error
    except Exception as error:  # whatever running or parsing the user's file raised: the file is the culprit
        raise ValueError(f'config {path} cannot be read: {error_text(error)}') from error


def installed_metainfo(metainfo: Any) -> Any:
    """``metainfo`` (``CocoDataset.METAINFO``, or a config's ``dict(from_file='configs/_base_/datasets/...')``)
    with its file, relative to an mmpose checkout and not found from here, taken from the installed mmpose, which
    mmpose falls back on anyway, with a warning at every dataset build outside such a checkout."""
    path = metainfo.get('from_file') if isinstance(metainfo, dict) else None
    if not isinstance(path, str) or osp.isabs(path) or osp.isfile(path):
        return metainfo
    installed = installed_config(f"mmpose::{osp.relpath(path, 'configs')}")
    return dict(metainfo, from_file=installed) if osp.isfile(installed) else metainfo

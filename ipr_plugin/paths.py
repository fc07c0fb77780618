"""Where the package finds things: the checkout it lives in, and the configs an OpenMMLab package installs."""
import importlib.util
import os.path as osp
from pathlib import Path

# The checkout: configs/, tools/, data/ and BENCHMARKS.md sit there in an editable install (the tools put their own
# checkout first on sys.path, so this is the checkout of the tool that runs).
REPO_ROOT = Path(__file__).resolve().parents[1]


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

"""A wheel of the package works without the checkout: its configs, default output folders, tool modules and
console scripts. Built from a copy of the package's files, installed with ``pip install --target`` and imported
from there (``PYTHONPATH`` comes before the editable install of the checkout), from an empty working folder."""
import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Run in the installed copy: where things resolve, printed as JSON.
PROBE = '''
import json, os
import ipr_plugin
from ipr_plugin import paths
from ipr_plugin.apis import demo, study_configs
from ipr_plugin.benchmark.spec import OURS_FAST_CONFIG, default_configs, resolve_config_path
print(json.dumps(dict(
    package=ipr_plugin.__file__, in_checkout=paths.IN_CHECKOUT, work_root=str(paths.work_root()), cwd=os.getcwd(),
    demo_config=str(demo.DEMO_CONFIG), demo_work_dir=str(demo.DEFAULT_WORK_DIR),
    study_configs=[str(study_configs.source_config(v)) for v in study_configs.VARIANTS if v.trains_ours],
    fast_config=str(study_configs.FAST_CONFIG), bench_fast=resolve_config_path(OURS_FAST_CONFIG),
    bench_defaults=default_configs(),
    mim_name=paths.installed_config('ipr_plugin::ipr_res50_8xb64-210e_coco-256x256.py'),
    loads=paths.load_config('ipr_plugin::ipr_res50_8xb64-210e_coco-256x256.py').model.head.type)))
'''


@pytest.fixture(scope='module')
def installed(tmp_path_factory: pytest.TempPathFactory):
    """(wheel file, site folder the wheel is installed in, an empty working folder)."""
    root = tmp_path_factory.mktemp('packaging')
    source = root / 'source'
    source.mkdir()
    for name in ('setup.py', 'README.md'):
        shutil.copy2(REPO_ROOT / name, source / name)
    for name in ('ipr_plugin', 'configs'):  # the link ipr_plugin/.mim/configs -> configs/ kept as a link
        shutil.copytree(REPO_ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns('__pycache__'))
    pip = [sys.executable, '-m', 'pip', '-q', '--disable-pip-version-check']
    subprocess.run([*pip, 'wheel', str(source), '--no-deps', '--no-build-isolation', '-w', str(root / 'dist')],
                   check=True, timeout=300, cwd=root)
    wheel = next((root / 'dist').glob('ipr_plugin-*.whl'))
    site = root / 'site'
    subprocess.run([*pip, 'install', '--no-deps', '--target', str(site), str(wheel)], check=True, timeout=300)
    work = root / 'work'
    work.mkdir()
    return wheel, site, work


def _run(site: Path, work: Path, args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(PATH='/usr/bin:/bin', PYTHONPATH=str(site), HOME=str(work))
    return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_ships_every_config(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(REPO_ROOT / 'configs').as_posix() for p in (REPO_ROOT / 'configs').rglob('*.py')}
    assert configs and {f'ipr_plugin/.mim/configs/{c}' for c in configs} <= names


def test_wheel_asks_for_the_ranges_the_import_checks(installed):
    """setup.py's install_requires and the import-time check read the same table (ipr_plugin/version.py)."""
    from ipr_plugin.version import SUPPORTED
    wheel, _, _ = installed
    archive = zipfile.ZipFile(wheel)
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    requires = {line.split(': ', 1)[1].replace(' ', '') for line in metadata.splitlines()
                if line.startswith('Requires-Dist: ')}
    for name, (low, high) in SUPPORTED.items():
        assert {f'{name}<{high},>={low}', f'{name}>={low},<{high}'} & requires, (name, sorted(requires))


@pytest.mark.skipif(not any(Path(d, 'jpeglib.h').exists() for d in ('/usr/include', '/usr/local/include')),
                    reason='no libjpeg headers here: setup.py builds no region decoder')
def test_wheel_ships_the_region_decoder_and_it_works_there(installed):
    """setup.py compiles _jpeg_region where libjpeg-turbo's headers are (as here): the installed copy imports
    and passes the check it must pass before the transforms use it."""
    wheel, site, work = installed
    assert any(n.startswith('ipr_plugin/datasets/transforms/_jpeg_region.') and n.endswith('.so')
               for n in zipfile.ZipFile(wheel).namelist())
    code = ('from ipr_plugin.datasets.transforms import jpeg_region as j; '
            'print(j.__file__, j.region_decoding_available(), j.region_decoder())')
    done = _run(site, work, [sys.executable, '-c', code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(site)) and ' True libjpeg-turbo ' in done.stdout


def test_installed_package_finds_its_configs_and_writes_beside_the_user(installed):
    """Without the checkout, the configs the tools use are the wheel's copies, and outputs go to the current
    folder, not into site-packages."""
    _, site, work = installed
    proc = _run(site, work, [sys.executable, '-c', PROBE])
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found['package'] == str(site / 'ipr_plugin' / '__init__.py')
    assert not found['in_checkout'] and found['work_root'] == found['cwd'] == str(work)
    assert found['demo_work_dir'] == str(work / 'work_dirs' / 'demo')
    shipped = [found['demo_config'], *found['study_configs'], found['fast_config'], found['bench_fast'],
               found['mim_name']]
    for path in shipped:
        assert path.startswith(str(site / 'ipr_plugin' / '.mim' / 'configs')) and Path(path).is_file(), path
    assert len(found['bench_defaults']) == 3  # ours-fast too
    assert found['loads'] == 'IPRHead'


def test_console_scripts_run_the_tools(installed):
    """The wheel's console scripts (setup.py's entry_points) name importable functions, and one runs end to
    end: ipr-make-synthetic-coco writes a set."""
    wheel, site, work = installed
    with zipfile.ZipFile(wheel) as z:
        entry_file = next(n for n in z.namelist() if n.endswith('.dist-info/entry_points.txt'))
        entries = configparser.ConfigParser()
        entries.read_string(z.read(entry_file).decode())
    scripts = dict(entries['console_scripts'])
    assert {'ipr-benchmark', 'ipr-accuracy-study', 'ipr-check-data', 'ipr-demo', 'ipr-export-onnx',
            'ipr-make-person-boxes', 'ipr-make-synthetic-coco'} <= set(scripts)
    check = ('import importlib, sys\nfor target in sys.argv[1:]:\n    module, name = target.split(":")\n'
             '    assert callable(getattr(importlib.import_module(module), name)), target')
    proc = _run(site, work, [sys.executable, '-c', check, *scripts.values()])
    assert proc.returncode == 0, proc.stderr[-3000:]

    proc = _run(site, work, [str(site / 'bin' / 'ipr-make-synthetic-coco'), '--out', 'synth', '--num-train', '1',
                             '--num-val', '1', '--image-size', '160', '120'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / 'synth' / 'annotations').is_dir(), sorted(p.name for p in (work / 'synth').iterdir())
    proc = _run(site, work, [sys.executable, '-m', 'ipr_plugin.benchmark', '--help'])
    assert proc.returncode == 0 and proc.stdout.startswith('usage: python -m ipr_plugin.benchmark'), proc.stderr


def _setup_into(env_dir: Path, tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess:
    """tools/setup_env.sh run with ``IPR_VENV=env_dir``, whose ``bin/python`` only notes its arguments in
    ``tmp_path/calls`` (nothing is installed anywhere)."""
    (env_dir / 'bin').mkdir(parents=True, exist_ok=True)
    python = env_dir / 'bin' / 'python'
    python.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "calls"}"\n')
    python.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != 'IPR_VENV_ADOPT'}
    env.update(IPR_VENV=str(env_dir), IPR_WHEEL_CACHE=str(tmp_path / 'cache'), TMPDIR=str(tmp_path), **env_vars)
    return subprocess.run(['bash', str(REPO_ROOT / 'tools' / 'setup_env.sh')], env=env, capture_output=True,
                          text=True, timeout=60)


def test_setup_refuses_an_environment_it_did_not_make(tmp_path: Path) -> None:
    """``IPR_VENV`` pointed at the user's own environment: nothing is installed into it (its CUDA torch would have
    been replaced by the pinned CPU one), and the message says how to add the plugin instead."""
    env_dir = tmp_path / 'their env'
    done = _setup_into(env_dir, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f'{env_dir} is a Python environment this script did not make' in done.stderr
    assert 'pip install --no-deps -e' in done.stderr and 'IPR_VENV_ADOPT=1' in done.stderr
    assert not (tmp_path / 'calls').exists() and sorted(p.name for p in env_dir.iterdir()) == ['bin']


@pytest.mark.parametrize('mark', ['setup.log', 'IPR_VENV_ADOPT=1'])
def test_setup_goes_on_in_its_own_environment_or_when_told_to(tmp_path: Path, mark: str) -> None:
    """An environment an earlier set-up left unfinished (its setup.log, no stamp) is the script's own; another is
    set up when IPR_VENV_ADOPT=1 says so."""
    env_dir = tmp_path / 'env'
    if mark == 'setup.log':
        env_dir.mkdir()
        (env_dir / 'setup.log').write_text('an earlier set-up that failed\n')
    done = _setup_into(env_dir, tmp_path, **(dict(IPR_VENV_ADOPT='1') if mark != 'setup.log' else {}))
    assert 'did not make' not in done.stderr and done.returncode == 0, done.stdout + done.stderr
    assert 'environment ready' in done.stdout and '-m pip install' in (tmp_path / 'calls').read_text()

"""Every command-line tool runs its own checkout's package, not another one installed in the environment (an
editable install of a second clone, a shared virtualenv): otherwise its outputs land in, and its code comes from,
that other checkout."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = sorted(path.name for path in (REPO / 'tools').glob('*.py'))
MARK = 'imported from the checkout beside it'


def _stand_in_checkout(root: Path, tool: str) -> Path:
    """A checkout holding ``tools/<tool>`` and a package that only says it was imported; the tool's path."""
    (root / 'tools').mkdir(parents=True)
    (root / 'ipr_plugin').mkdir()
    (root / 'ipr_plugin' / '__init__.py').write_text(f'raise SystemExit({MARK!r})\n')
    return Path(shutil.copy(REPO / 'tools' / tool, root / 'tools' / tool))


def _help_output(script: Path, cwd: Path) -> str:
    # run from elsewhere: neither the working directory nor PYTHONPATH may lead to the right package
    result = subprocess.run([sys.executable, str(script), '--help'], cwd=cwd, capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
    return result.stdout[-500:] + result.stderr[-500:]


@pytest.mark.parametrize('tool', TOOLS)
def test_a_tool_imports_the_package_beside_it(tool, tmp_path):
    assert MARK in _help_output(_stand_in_checkout(tmp_path / 'checkout', tool), tmp_path)


def test_a_tool_run_through_a_symlink_imports_the_package_of_its_file(tmp_path):
    script = _stand_in_checkout(tmp_path / 'checkout', 'benchmark.py')
    (tmp_path / 'bin').mkdir()
    (tmp_path / 'bin' / 'benchmark.py').symlink_to(script)
    assert MARK in _help_output(tmp_path / 'bin' / 'benchmark.py', tmp_path)


def test_an_output_that_is_one_of_the_inputs_is_refused_whatever_form_the_inputs_take(tmp_path):
    from pathlib import Path as P

    from mmengine.config import Config

    from ipr_plugin.arguments import check_out_file
    config = tmp_path / 'cfg.py'
    config.write_text('x = 1\n')
    for given in (str(config), P(config)):
        with pytest.raises(ValueError, match='is an input of this run'):
            check_out_file(str(tmp_path / '.' / 'cfg.py'), inputs=[given])
    # names that are no paths are left alone, whatever they are
    check_out_file(str(config), inputs=[Config(dict(x=1)), 'mmdet::rtmdet/rtmdet_m_8xb32-300e_coco.py',
                                        'https://host/cfg.py', None])


def test_input_errors_end_a_tool_in_one_line_unless_the_traceback_is_asked_for(monkeypatch):
    from ipr_plugin.arguments import exit_on_input_errors
    monkeypatch.delenv('IPR_TRACEBACK', raising=False)
    with pytest.raises(SystemExit, match=r'^tool: no such file: a.json \(IPR_TRACEBACK=1 shows where'):
        with exit_on_input_errors('tool'):
            raise FileNotFoundError('no such file: a.json')
    with pytest.raises(SystemExit, match=r'^tool: the API named it \(IPR_TRACEBACK'):  # not prefixed twice
        with exit_on_input_errors('tool'):
            raise ValueError('tool: the API named it')
    monkeypatch.setenv('IPR_TRACEBACK', '1')
    with pytest.raises(FileNotFoundError):
        with exit_on_input_errors('tool'):
            raise FileNotFoundError('no such file: a.json')


def test_the_section_names_the_command_as_it_was_run(tmp_path: Path, monkeypatch) -> None:
    """tools/benchmark.py relative to the working folder, ``python -m ipr_plugin.<module>``, or the console
    script a wheel installs: each is a command a reader can run again. A process the tool did not start (a prompt,
    ``python -c``, a notebook, pytest calling ``main``) is no such command: the tool's ``python -m`` is."""
    import pytest as pytest_module

    from ipr_plugin import cli
    from ipr_plugin.apis import accuracy_study
    from ipr_plugin.benchmark import cli as bench_cli

    bench, study = 'ipr_plugin.benchmark', 'ipr_plugin.apis.accuracy_study'
    monkeypatch.chdir(tmp_path)
    script = str(tmp_path / 'tools' / 'benchmark.py')
    assert cli.command_line(['--tiny'], cli.invocation(script, bench)) == 'python tools/benchmark.py --tiny'
    assert cli.invocation('/elsewhere/tools/benchmark.py', bench) == 'python /elsewhere/tools/benchmark.py'
    package_main = str(Path(bench_cli.__file__).with_name('__main__.py'))
    assert cli.invocation(package_main, bench) == 'python -m ipr_plugin.benchmark'
    # python -m ipr_plugin.apis.accuracy_study: its argv[0] is the module's file
    assert cli.invocation(accuracy_study.__file__, study) == 'python -m ipr_plugin.apis.accuracy_study'
    assert cli.command_line(['--label', 'a b'], cli.invocation('/venv/bin/ipr-accuracy-study', study)) == \
        "ipr-accuracy-study --label 'a b'"
    for other in ('', '-c', '-', '/venv/lib/ipykernel_launcher.py', pytest_module.__file__, '/venv/bin/pytest',
                  package_main, '/venv/bin/ipr-benchmark'):  # the last two: another tool's
        assert cli.invocation(other, study) == f'python -m {study}', other
    assert cli.invocation(str(tmp_path / 'tools' / 'accuracy_study.py'), bench) == f'python -m {bench}'


def test_a_full_sized_run_writes_its_data_under_the_checkout(monkeypatch) -> None:
    """Without --tiny or --data-root the synthetic set goes to data/bench_synthetic of the checkout (the current
    folder when installed), where the next run reuses it; stopped at the data step, before minutes of writing."""
    from ipr_plugin.benchmark import cli

    class Stop(Exception):
        pass

    def stop(root, *args):
        raise Stop(root)

    monkeypatch.setattr(cli, 'prepare_data', stop)
    with pytest.raises(Stop) as stopped:
        cli.main(['--configs', 'configs/ipr_res50_8xb64-210e_coco-256x256.py',
                  '--num-images', '1', '--num-val-images', '1'])
    assert stopped.value.args[0] == str(REPO / 'data' / 'bench_synthetic')


def test_a_mistyped_config_stops_the_benchmark_before_its_data(monkeypatch, capsys) -> None:
    """One line naming the file, before the synthetic set is written and a worker fails on it with a traceback."""
    from ipr_plugin.benchmark import cli

    monkeypatch.setattr(cli, 'prepare_data', lambda *args: pytest.fail('the data was written'))
    for config in ('configs/nope.py', 'mmpose::body_2d_keypoint/nope.py'):
        with pytest.raises(SystemExit) as stopped:
            cli.main(['--tiny', '--configs', config, 'ours=configs/ipr_res50_8xb64-210e_coco-256x256.py'])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and 'argument --configs: config not found: ' in err, err
        assert config.split('::')[-1] in err.splitlines()[-1]


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which('setpriv'), reason='root writes anywhere without setpriv')
def test_an_output_whose_folder_is_read_only_is_refused_before_the_work(tmp_path: Path) -> None:
    """JSON outputs and ONNX models are written beside their place and moved there: an existing, writable file in
    a read-only folder cannot be replaced, which must show before the work, not after it."""
    folder = tmp_path / 'read_only'
    folder.mkdir()
    (folder / 'm.onnx').write_text('an earlier model')
    folder.chmod(0o555)
    check = ('import sys\nfrom ipr_plugin.arguments import check_out_file\n'
             'check_out_file(sys.argv[1], in_place=True)\n'  # appended to: the file alone must be writable
             'try:\n    check_out_file(sys.argv[1])\nexcept PermissionError as error:\n    print(error)\n')
    # as root, without the capability that ignores file modes
    prefix = ['setpriv', '--inh-caps=-dac_override', '--bounding-set=-dac_override'] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run([*prefix, sys.executable, '-c', check, str(folder / 'm.onnx')], capture_output=True,
                              text=True, timeout=300, cwd=REPO)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f'its folder {folder} is not writable' in proc.stdout


def test_help_gives_each_default_the_help_does_not_give_already():
    import argparse
    from ipr_plugin.arguments import ToolHelpFormatter
    parser = argparse.ArgumentParser(prog='tool', formatter_class=ToolHelpFormatter)
    parser.add_argument('--seed', type=int, default=0, help='seed')
    parser.add_argument('--size', type=int, nargs=2, default=(640, 480), help='pixels')
    parser.add_argument('--skip', nargs='+', default=[], help='parts not to run')
    parser.add_argument('--out', default=None, help='output file')
    parser.add_argument('--fast', action='store_true', help='fast')
    parser.add_argument('--lr', type=float, default=1e-3, help='learning rate (default: 1e-3 for Adam)')
    parser.add_argument('--rate', default='5%', help='share')
    text = ' '.join(parser.format_help().split('options:')[1].split())
    assert text == ('-h, --help show this help message and exit --seed SEED seed (default: 0) --size SIZE SIZE pixels '
                    '(default: 640 480) --skip SKIP [SKIP ...] parts not to run --out OUT output file --fast fast '
                    '--lr LR learning rate (default: 1e-3 for Adam) --rate RATE share (default: 5%)'), text


def test_progress_bars_redraw_seldom_into_a_log_file(monkeypatch):
    """Every redraw of a bar stays in a log file (tqdm goes back with '\\r'): not a terminal, every 30 s at most."""
    import io

    from ipr_plugin.progress import progress_bar
    monkeypatch.setattr(sys, 'stderr', io.StringIO())
    with progress_bar(total=3, file=sys.stderr) as bar:
        assert bar.mininterval == 30.0 and bar.maxinterval == 30.0  # no redraws from tqdm's monitor in between
    with progress_bar(total=3, file=sys.stderr, mininterval=1.0) as bar:  # a caller's own interval stands
        assert bar.mininterval == 1.0
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True, raising=False)
    with progress_bar(total=3, file=sys.stderr) as bar:
        assert bar.mininterval == 0.1  # tqdm's own, on a terminal


"""Where the tools write: a place that cannot take their output is refused by name before the work (not with a
traceback after it), links are followed to where they lead, and defaults do not depend on the working folder."""
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ipr_plugin.arguments import check_out_file, check_out_folder
from ipr_plugin.benchmark import cli as bench_cli
from ipr_plugin.datasets import synthetic_coco
from ipr_plugin.paths import work_root


@pytest.mark.parametrize('given', ['', 'report/'])
def test_an_output_that_names_no_file_is_refused(given: str) -> None:
    """``--out report/`` was written as a file named ``report``; ``--out ''`` failed after the work."""
    with pytest.raises(ValueError, match='names no file'):
        check_out_file(given)


def test_an_output_link_is_checked_where_it_leads(tmp_path: Path) -> None:
    """The file is written through the link (beside its target): the check looked beside the link instead, passed,
    and the tool failed after its work."""
    (tmp_path / 'a_file').write_text('')
    link = tmp_path / 'report.json'
    link.symlink_to(tmp_path / 'a_file' / 'report.json')
    with pytest.raises(NotADirectoryError, match=f'{tmp_path / "a_file"} is not a directory'):
        check_out_file(str(link))
    with pytest.raises(NotADirectoryError, match='is not a directory'):
        check_out_folder(str(tmp_path / 'a_file' / 'sub'))
    check_out_folder(str(tmp_path / 'new' / 'sub'))  # folders to be made


def _refusal(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return f'{stop.value.code} {capsys.readouterr().err}'


def test_a_file_where_a_tool_wants_a_folder_is_refused_before_the_work(tmp_path: Path, capsys) -> None:
    """The demo, the benchmark and the accuracy study ended with a traceback from a lock file inside the folder."""
    from ipr_plugin.apis import accuracy_study
    from ipr_plugin.cli import demo
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    for flag in ('--work-dir', '--data-root'):
        said = _refusal(capsys, demo.main, [flag, str(a_file)])
        assert said.startswith('2 ') and f'argument {flag}: folder {a_file}' in said, said
        with pytest.raises(SystemExit, match=f'argument {flag}: folder {a_file}'):
            accuracy_study.main(['--tiny', '--work-dir', str(tmp_path / 'w'), flag, str(a_file)])
    said = _refusal(capsys, bench_cli.main, ['--tiny', '--data-root', str(a_file), '--out', str(tmp_path / 'B.md')])
    assert said.startswith('2 ') and f'argument --data-root: folder {a_file}' in said, said


def test_the_study_checks_its_report_files_before_training(tmp_path: Path) -> None:
    """The report was written after every row had trained: a --out that could not take it lost the whole run."""
    from ipr_plugin.apis import accuracy_study
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'docs').write_text('')  # a file where docs/ must go
    with pytest.raises(SystemExit, match=f'argument --out: report file {out / "docs"}'):
        accuracy_study.main(['--tiny', '--work-dir', str(tmp_path / 'w'), '--out', str(out)])
    assert not (tmp_path / 'w').exists()  # nothing written, nothing trained


def test_the_study_works_in_the_checkout_from_any_folder(tmp_path: Path, monkeypatch) -> None:
    """Its work folder (and data) went to the current folder while its report went to the checkout."""
    from ipr_plugin.apis.accuracy_study import _resolve, build_parser
    monkeypatch.chdir(tmp_path)
    args = _resolve(build_parser().parse_args(['--tiny', '--device', 'cpu']))
    assert args.work_dir == (work_root() / 'work_dirs' / 'accuracy_study_tiny').resolve()
    assert args.data_root == args.work_dir / 'data'


def test_a_set_named_through_a_link_is_the_set_itself(tmp_path: Path, monkeypatch) -> None:
    """The benchmark wrote its synthetic set again whenever the folder was named another way (a link)."""
    real = tmp_path / 'data'
    first = bench_cli.prepare_data(str(real), 2, 1, seed=0)
    (tmp_path / 'link').symlink_to(real)
    written = []
    write = synthetic_coco.write_synthetic_coco
    monkeypatch.setattr(synthetic_coco, 'write_synthetic_coco', lambda *a, **k: written.append(1) or write(*a, **k))
    assert bench_cli.prepare_data(str(tmp_path / 'link'), 2, 1, seed=0) == first and written == []
    assert synthetic_coco.write_synthetic_coco(str(tmp_path / 'link'), 2, 1, seed=0)['root'] == str(real)


def test_an_equals_sign_inside_a_config_path_is_part_of_the_path(tmp_path: Path) -> None:
    """``--configs runs/lr=1e-3/c.py`` was read as a config named ``runs/lr`` at ``1e-3/c.py``."""
    from ipr_plugin.benchmark.spec import parse_config_arg
    config = tmp_path / 'lr=1e-3' / 'c.py'
    config.parent.mkdir()
    config.write_text('x = 1\n')
    assert parse_config_arg(str(config))[1] == str(config)
    assert parse_config_arg(f'fast={config}')[:2] == ('fast', str(config))
    assert parse_config_arg('a=b=c.py')[:2] == ('a', 'b=c.py')  # no such file: a NAME, as before


def test_the_benchmarks_picture_needs_a_writable_folder_which_is_checked_before_measuring(tmp_path: Path) -> None:
    """--plot was checked as a file saved over, but it is written beside its place and moved there: a read-only
    folder passed the check and failed after the measuring, before the table was appended."""
    import os
    import subprocess
    import sys
    folder = tmp_path / 'pictures'
    folder.mkdir()
    (folder / 'plot.png').write_bytes(b'an earlier picture')
    folder.chmod(0o555)
    script = 'import sys\nfrom ipr_plugin.benchmark import main\nsys.exit(main(sys.argv[1:]))\n'
    # as root, without the capability that ignores file modes
    prefix = ['setpriv', '--inh-caps=-dac_override', '--bounding-set=-dac_override'] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run([*prefix, sys.executable, '-c', script, '--tiny', '--plot', str(folder / 'plot.png'),
                               '--out', str(tmp_path / 'B.md')], capture_output=True, text=True, timeout=300)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2 and f'its folder {folder} is not writable' in proc.stderr, proc.stderr[-2000:]


def test_a_tilde_the_shell_left_as_typed_is_refused_not_made_a_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--out=~/data``: the shell expands no ``~`` after ``=``, and the tools made a folder named ``~`` here."""
    from ipr_plugin.cli import make_synthetic_coco
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="report file ~/r.json: ~ is not expanded here"):
        check_out_file('~/r.json', 'report file')
    for folder in ('~bob/runs', '~', '~/'):
        with pytest.raises(FileNotFoundError, match=f"{folder.split('/')[0]} is not expanded here"):
            check_out_folder(folder)
    check_out_file('~draft.md')  # a file named so, as the shell leaves it too; and a '~' further on is a name
    check_out_folder('runs/~old')
    from ipr_plugin.apis.accuracy_study import _resolve, build_parser
    with pytest.raises(SystemExit, match=r'argument --work-dir: folder ~bob/runs: ~bob is not expanded here'):
        _resolve(build_parser().parse_args(['--tiny', '--work-dir=~bob/runs']))  # which it then resolves
    said = _refusal(capsys, make_synthetic_coco.main, ['--out=~/data', '--num-train', '1', '--num-val', '1'])
    assert said.startswith('2 ') and 'argument --out: folder ~/data: ~ is not expanded here' in said, said
    assert list(tmp_path.iterdir()) == []
    (tmp_path / '~').mkdir()  # a folder of that name, made on purpose, is one like any other
    check_out_file('~/r.json')
    check_out_folder('~/data')


def test_each_study_names_its_files_by_its_start_and_never_takes_an_earlier_ones_name(tmp_path: Path) -> None:
    """Every accuracy study wrote docs/calibration.png and docs/accuracy_study.json, so a later one replaced the files
    an earlier section of BENCHMARKS.md cites."""
    from ipr_plugin.apis.study_report import output_paths, run_stamp
    now = datetime(2026, 12, 7, 20, 38, 12, tzinfo=timezone.utc)
    assert run_stamp(tmp_path, now) == '20261207-203812'
    paths = output_paths(tmp_path, '20261207-203812')
    assert paths['plot'].name == 'calibration_20261207-203812.png' and paths['latest_plot'].name == 'calibration.png'
    paths['plot'].parent.mkdir()
    paths['plot'].write_bytes(b'')  # a study started in the same second
    assert run_stamp(tmp_path, now) == '20261207-203812-2'
    output_paths(tmp_path, '20261207-203812-2')['json'].write_text('{}')
    assert run_stamp(tmp_path, now) == '20261207-203812-3'

"""Two runs of a tool at once that name the same data or work folder: neither measures on the other's data,
deletes the other's results, or writes a shared file torn."""
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ipr_plugin.apis.accuracy_study import build_parser, run_study
from ipr_plugin.apis.demo import run_demo
from ipr_plugin.benchmark import cli as bench_cli
from ipr_plugin.cli import make_synthetic_coco
from ipr_plugin.datasets import synthetic_coco
from ipr_plugin.locks import FolderInUse, flocked, lock_available, own_folder
from ipr_plugin.markdown import HEADER, append_section

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not lock_available(), reason='file locks need fcntl (Linux, macOS)')

# a second process that takes the benchmark's set in ROOT with seed SEED and holds it until its stdin closes
HOLDER = '''
import sys
from ipr_plugin.benchmark import cli
import contextlib
with contextlib.ExitStack() as held:
    cli.prepare_data(sys.argv[1], 2, 1, int(sys.argv[2]), held)
    print('held', flush=True)
    sys.stdin.read()
'''


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the benchmark's synthetic set (seed 0) in ``tmp_path / 'data'``."""
    procs = []

    def start(root: Path, seed: int = 0) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, '-c', HOLDER, str(root), str(seed)], cwd=REPO_ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == 'held'
        return proc

    yield start
    for proc in procs:
        proc.communicate(timeout=60)


def test_a_set_in_use_by_another_process_is_shared_or_refused_never_rewritten(tmp_path, holder, monkeypatch):
    """Another benchmark holds the set of seed 0: a run with seed 0 shares it; a run with seed 1 stops, naming
    the folder, and the images stay those of seed 0 (it rewrote them under the other run before)."""
    root = tmp_path / 'data'
    holder(root, seed=0)
    stamp = (root / bench_cli.DATA_STAMP).read_text()
    images = {p.name: p.read_bytes() for p in (root / 'train2017').iterdir()}
    written = []
    write = synthetic_coco.write_synthetic_coco
    monkeypatch.setattr(synthetic_coco, 'write_synthetic_coco', lambda *a, **k: written.append(1) or write(*a, **k))

    same = bench_cli.prepare_data(str(root), 2, 1, 0)
    assert written == [] and same['root'] == str(root)
    with pytest.raises(FolderInUse, match=f'{root} holds a synthetic set that another run is using now'):
        bench_cli.prepare_data(str(root), 2, 1, 1)
    assert written == []
    assert (root / bench_cli.DATA_STAMP).read_text() == stamp
    assert {p.name: p.read_bytes() for p in (root / 'train2017').iterdir()} == images


def test_a_set_no_run_holds_any_more_is_written_again(tmp_path, holder):
    root = tmp_path / 'data'
    holder(root, seed=0).communicate(timeout=60)  # that run ended
    data = bench_cli.prepare_data(str(root), 2, 1, 1)
    assert '"seed": 1' in (root / bench_cli.DATA_STAMP).read_text() and data['num_train_images'] == 2


def test_the_benchmark_names_the_data_folder_in_use_before_measuring(tmp_path, holder, capsys):
    root = tmp_path / 'data'
    holder(root, seed=0)
    with pytest.raises(SystemExit) as exit_info:
        bench_cli.main(['--tiny', '--device', 'cpu', '--seed', '1', '--data-root', str(root)])
    assert exit_info.value.code == 2
    assert f'argument --data-root: {root} holds a synthetic set that another run is using' in capsys.readouterr().err


def test_make_synthetic_coco_does_not_write_over_a_set_in_use(tmp_path, holder, capsys):
    root = tmp_path / 'data'
    holder(root, seed=0)
    before = (root / 'annotations' / 'person_keypoints_train2017.json').read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        make_synthetic_coco.main(['--out', str(root), '--num-train', '2', '--num-val', '1', '--seed', '1'],
                                 prog='make_synthetic_coco')
    assert f'make_synthetic_coco: argument --out: {root} holds a synthetic set' in str(exit_info.value.code)
    assert (root / 'annotations' / 'person_keypoints_train2017.json').read_bytes() == before


def test_a_data_root_of_the_users_own_coco_files_is_named_and_left_alone(tmp_path, capsys):
    """``--data-root data/coco``: the benchmark (as the demo and the study) replaced the real annotations."""
    real = tmp_path / 'coco' / 'annotations' / 'person_keypoints_val2017.json'
    real.parent.mkdir(parents=True)
    real.write_text('{"images": []}')
    with pytest.raises(SystemExit) as exit_info:
        bench_cli.main(['--tiny', '--device', 'cpu', '--data-root', str(real.parents[1])])
    assert exit_info.value.code == 2
    assert f'argument --data-root: {real.parents[1]} holds {real}, which no synthetic set wrote' \
        in capsys.readouterr().err
    assert real.read_text() == '{"images": []}' and not (tmp_path / 'coco' / 'train2017').exists()


def test_a_set_written_over_by_make_synthetic_coco_is_not_taken_for_the_stamped_one(tmp_path):
    """``make_synthetic_coco --out`` over a benchmark's folder no run uses left the benchmark's stamp, and the
    next benchmark took the other set (seed 1) for its own (seed 0)."""
    root = tmp_path / 'data'
    first = bench_cli.prepare_data(str(root), 2, 1, 0)
    train_file = root / 'annotations' / 'person_keypoints_train2017.json'
    ours = train_file.read_bytes()
    make_synthetic_coco.main(['--out', str(root), '--num-train', '2', '--num-val', '1', '--seed', '1'],
                             prog='make_synthetic_coco')
    assert train_file.read_bytes() != ours
    assert bench_cli.prepare_data(str(root), 2, 1, 0) == first
    assert train_file.read_bytes() == ours  # written again, with its own seed


def test_an_accuracy_study_refuses_a_work_folder_another_study_uses(tmp_path):
    """Its rows' folders start by deleting the results found there: the other study's, a moment later read
    back as missing or as this one's."""
    work = tmp_path / 'work'
    args = build_parser().parse_args(['--tiny', '--variants', 'ours-L1', '--work-dir', str(work)])
    with own_folder(str(work), 'accuracy study'):
        with pytest.raises(SystemExit, match=f'accuracy study: {work} is in use by another accuracy study running '
                                             'now; give this one a folder of its own \\(--work-dir\\)'):
            run_study(args, command='test')
    assert not (work / 'data').exists()  # stopped before writing anything


def test_a_demo_refuses_a_work_folder_another_demo_uses(tmp_path):
    work = tmp_path / 'work'
    with own_folder(str(work), 'demo'):
        with pytest.raises(FolderInUse, match=f'{work} is in use by another demo'):
            run_demo(work_dir=work, data_root=tmp_path / 'data', num_train=1, num_val=1, epochs=1)
    assert not (tmp_path / 'data').exists()


def test_an_append_waits_for_the_one_before_so_a_new_file_gets_one_header(tmp_path):
    """Two tools appending to a new BENCHMARKS.md at once wrote its header twice, the second mid-file."""
    out = tmp_path / 'BENCHMARKS.md'
    appended = threading.Event()
    with flocked(str(out), exclusive=True):  # another tool in the middle of its append
        writer = threading.Thread(target=lambda: (append_section(out, '## second\n'), appended.set()))
        writer.start()
        assert not appended.wait(1.0), 'the append did not wait for the one in progress'
        with open(out, 'a') as f:  # what the other tool writes meanwhile
            f.write(HEADER + '\n## first\n')
    writer.join(30)
    text = out.read_text()
    assert text.count('# Benchmarks') == 1 and text.index('## first') < text.index('## second')


def test_a_file_system_without_locks_leaves_the_tools_running_unguarded_with_one_warning(tmp_path: Path, monkeypatch,
                                                                                        capsys) -> None:
    """A cluster file system mounted without locks (Lustre's noflock, some NFS and FUSE mounts) answers flock with
    ENOSYS or ENOLCK: every tool that takes a lock failed there with 'Function not implemented'."""
    import errno
    import fcntl
    import os

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    monkeypatch.setattr(fcntl, 'flock', no_locks)
    report = tmp_path / 'BENCHMARKS.md'
    append_section(report, '| a | 1 |\n')
    with own_folder(str(tmp_path), 'benchmark'):
        append_section(report, '| b | 2 |\n')
    assert '| a | 1 |' in report.read_text() and '| b | 2 |' in report.read_text()
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'file system takes no file locks' in line]
    assert warnings == [f'warning: {tmp_path}: its file system takes no file locks (Function not implemented), so '
                        'two runs using this folder at once are not kept apart']

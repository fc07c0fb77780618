"""Ctrl-C, a time limit or a job scheduler's SIGTERM in the middle of a tool: no earlier output damaged, no
half-written data taken for whole on the next run, no process left running."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipr_plugin.benchmark import cli as bench_cli
from ipr_plugin.datasets import synthetic_coco, synthetic_sets

REPO_ROOT = Path(__file__).resolve().parents[1]


def _gone(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ends (or is a zombie, whoever is to reap it) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f'/proc/{pid}/stat') as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.2)
    return False


def _group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = []
        for entry in os.listdir('/proc'):
            if entry.isdigit():
                try:
                    with open(f'/proc/{entry}/stat') as f:
                        fields = f.read().rsplit(')', 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != 'Z':
                    alive.append(entry)
        if not alive:
            return True
        time.sleep(0.2)
    return False


def test_a_data_rewrite_cut_short_is_not_reused(tmp_path: Path, monkeypatch) -> None:
    """The benchmark (and the accuracy study) reuse a synthetic set when its stamp names the same parameters.
    A rewrite with other parameters that is interrupted has already replaced images: the old stamp must not
    survive it, or the next run trains on a mix under the first set's annotations."""
    root = str(tmp_path / 'data')
    first = bench_cli.prepare_data(root, 2, 1, seed=0)
    assert bench_cli.prepare_data(root, 2, 1, seed=0) == first  # reused

    write = synthetic_coco.write_synthetic_coco

    def interrupted(*args, **kwargs):
        write(*args, **dict(kwargs, seed=1))  # the images of the new set are on disk ...
        raise KeyboardInterrupt  # ... when the user stops the run

    monkeypatch.setattr(synthetic_coco, 'write_synthetic_coco', interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench_cli.prepare_data(root, 2, 1, seed=1)
    monkeypatch.undo()
    written = []
    monkeypatch.setattr(synthetic_coco, 'write_synthetic_coco', lambda *a, **k: written.append(1) or write(*a, **k))
    assert bench_cli.prepare_data(root, 2, 1, seed=0) == first and written == [1]  # written again


def test_a_set_another_writer_left_half_rewritten_is_not_reused(tmp_path: Path, monkeypatch) -> None:
    """``make_synthetic_coco --out`` over a benchmark's folder, stopped once its images are written and before its
    annotation files: the benchmark's stamp still named unchanged files, and the mixed set was reused."""
    root = str(tmp_path / 'data')
    first = bench_cli.prepare_data(root, 2, 1, seed=0)
    write_split = synthetic_coco._write_split

    def stopped(split, img_dir, rendered, *args):
        list(rendered)  # this split's images are on disk ...
        raise KeyboardInterrupt  # ... when the user stops the run

    monkeypatch.setattr(synthetic_coco, '_write_split', stopped)
    with pytest.raises(KeyboardInterrupt), synthetic_sets.writing_set(root):
        synthetic_coco.write_synthetic_coco(root, 2, 1, seed=1)
    monkeypatch.setattr(synthetic_coco, '_write_split', write_split)
    written = []
    write = synthetic_coco.write_synthetic_coco
    monkeypatch.setattr(synthetic_coco, 'write_synthetic_coco', lambda *a, **k: written.append(1) or write(*a, **k))
    assert bench_cli.prepare_data(root, 2, 1, seed=0) == first and written == [1]  # written again
    assert bench_cli.prepare_data(root, 2, 1, seed=0) == first and written == [1]  # and then reused


def test_a_copied_set_is_not_taken_for_the_folder_it_was_copied_from(tmp_path: Path) -> None:
    """Its stamp names the original folder's files: reused, the copy's run read (and locked) the other folder."""
    import shutil
    first = bench_cli.prepare_data(str(tmp_path / 'a'), 2, 1, seed=0)
    shutil.copytree(tmp_path / 'a', tmp_path / 'b')  # copy2: sizes and modification times kept
    copied = bench_cli.prepare_data(str(tmp_path / 'b'), 2, 1, seed=0)
    assert copied['root'] == str(tmp_path / 'b') and copied['train_ann_file'].startswith(str(tmp_path / 'b'))
    assert first['root'] == str(tmp_path / 'a')


def test_an_interrupted_onnx_export_leaves_the_earlier_file(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip('onnx')
    import onnx

    from ipr_plugin.apis.onnx_export import build_export_module, export_module

    module = build_export_module(str(REPO_ROOT / 'configs' / 'sample' / 'ipr_res18_coco-sample-64x64.py'))
    out = tmp_path / 'm.onnx'
    export_module(module, str(out))
    before = out.read_bytes()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx.checker, 'check_model', stopped)  # after the export, before the metadata is saved
    with pytest.raises(KeyboardInterrupt):
        export_module(module, str(out), input_size=(48, 64))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.onnx']  # no partial file left


@pytest.mark.parametrize('to_group', [False, True], ids=['process', 'group'])
def test_sigterm_stops_the_synthetic_writers_rendering_processes(tmp_path: Path, to_group: bool) -> None:
    """SIGTERM to make_synthetic_coco alone (a scheduler) used to leave its forked renderers running, blocked on
    a pipe nobody reads; to its whole process group (``timeout``), a renderer stopped mid-protocol could leave the
    pool's shutdown waiting forever."""
    out = tmp_path / 'synth'
    proc = subprocess.Popen([sys.executable, 'tools/make_synthetic_coco.py', '--out', str(out), '--num-train', '3000',
                             '--num-val', '1', '--workers', '2', '--image-size', '320', '240'],
                            cwd=REPO_ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any((out / 'train2017').glob('*.jpg')) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, 'the writer ended before it could be stopped: make it write more'
        os.killpg(proc.pid, signal.SIGTERM) if to_group else proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        assert _group_gone(proc.pid, 30), 'a rendering process outlived the tool'
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 128 + signal.SIGTERM


def test_a_data_check_worker_ends_when_the_checking_process_is_killed(tmp_path: Path) -> None:
    """A process killed outright closes nothing: its loading workers must see their pipe end and exit."""
    pid_file = tmp_path / 'worker.pid'
    script = ('import multiprocessing, os, sys\n'
              'from ipr_plugin.apis.data_check import _Worker\n'
              "worker = _Worker(multiprocessing.get_context('fork'), None)\n"
              'open(sys.argv[1], "w").write(str(worker.process.pid))\n'
              'os._exit(0)  # as SIGKILL would: no close(), no atexit\n')
    subprocess.run([sys.executable, '-c', script, str(pid_file)], cwd=REPO_ROOT, check=True, timeout=300)
    worker = int(pid_file.read_text())
    try:
        assert _gone(worker, 30), 'the loading worker outlived the checking process'
    finally:
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_stamp_cut_short_by_an_older_version_means_write_again(tmp_path: Path) -> None:
    """Stamps were once written in place: an empty or truncated one is no stamp, not a crash on every run."""
    stamp = tmp_path / 'stamp.json'
    for text in ('', '{"params": {"seed": 0}, "da', '[]', '{"params": {"seed": 0}, "data": null}'):
        stamp.write_text(text)
        assert synthetic_sets.stamped_data(str(stamp), dict(seed=0)) is None, text

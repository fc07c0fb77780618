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


def _writer_under_way(out: Path) -> subprocess.Popen:
    """``make_synthetic_coco`` writing a set big enough to stop, in a session of its own (stderr piped, as text),
    once its first image is on disk."""
    # Ctrl-C as in a terminal, also where these tests run in a background job (which ignores SIGINT, and so would
    # the writer, which would then finish)
    proc = subprocess.Popen([sys.executable, 'tools/make_synthetic_coco.py', '--out', str(out), '--num-train', '3000',
                             '--num-val', '1', '--workers', '2', '--image-size', '320', '240'],
                            cwd=REPO_ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any((out / 'train2017').glob('*.jpg')) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is not None:
        pytest.fail('the writer ended before it could be stopped: make it write more')
    return proc


def _ignores(pid: int, signum: int) -> bool:
    """Whether process ``pid`` ignores ``signum`` (/proc's mask of ignored signals)."""
    with open(f'/proc/{pid}/status') as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith('SigIgn:'))
    return bool(mask >> (signum - 1) & 1)


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
    proc = _writer_under_way(out)
    try:
        os.killpg(proc.pid, signal.SIGTERM) if to_group else proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert _group_gone(proc.pid, 30), 'a rendering process outlived the tool'
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 128 + signal.SIGTERM
    assert 'Traceback' not in err and err.strip().splitlines()[-1] == 'make_synthetic_coco: terminated', err


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


def test_a_rewrite_cut_short_leaves_no_annotation_file_of_the_earlier_set(tmp_path: Path, monkeypatch) -> None:
    """Training and check_data read a set's annotation files without looking for the writing marker: after a
    rewrite stopped once its first images were replaced, the earlier files described the new images as theirs."""
    root = tmp_path / 'data'
    first = synthetic_coco.write_synthetic_coco(str(root), 2, 1, seed=0)

    def stopped(split, img_dir, rendered, *args):
        list(rendered)  # this split's images are on disk ...
        raise KeyboardInterrupt  # ... when the user stops the run

    monkeypatch.setattr(synthetic_coco, '_write_split', stopped)
    with pytest.raises(KeyboardInterrupt):
        synthetic_coco.write_synthetic_coco(str(root), 2, 1, seed=1)
    assert (root / synthetic_coco.WRITING_MARKER).exists()
    for key in ('train_ann_file', 'val_ann_file', 'bbox_file'):
        assert not os.path.exists(first[key]), key


def test_a_child_forked_under_a_lock_does_not_keep_it(tmp_path: Path) -> None:
    """An flock lasts while any copy of its file is open: a worker forked under it, left behind by a parent killed
    outright, held a synthetic set's locks for good (every later run on the set waited forever)."""
    import multiprocessing

    from ipr_plugin.locks import FolderInUse, flocked
    path = str(tmp_path / '.lock')
    context = multiprocessing.get_context('fork')
    started = context.Event()
    with flocked(path, exclusive=True):
        child = context.Process(target=lambda: started.set() or time.sleep(60), daemon=True)
        child.start()
    try:
        assert started.wait(60)  # past the fork's hooks
        try:
            with flocked(path, exclusive=True, busy='held by the child'):
                pass
        except FolderInUse:
            pytest.fail('the forked child kept the lock after the parent released it')
    finally:
        child.kill()
        child.join()


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux only')
def test_the_synthetic_writers_renderers_end_when_it_is_killed_outright(tmp_path: Path) -> None:
    """SIGKILL (the out-of-memory killer, ``kill -9``) left the renderers, which block SIGINT and SIGTERM, waiting
    for work forever, holding the set's locks: a rerun on the folder waited for them without end."""
    from ipr_plugin.locks import flocked
    out = tmp_path / 'synth'
    proc = _writer_under_way(out)
    try:
        proc.kill()  # the writer alone, as the out-of-memory killer does
        proc.wait(60)
        assert _group_gone(proc.pid, 30), 'a rendering process outlived the writer'
        for name in ('.write.lock', '.use.lock'):
            with flocked(str(out / name), exclusive=True, busy=f'{name} still held'):
                pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux only')
@pytest.mark.parametrize('signum', [signal.SIGKILL, signal.SIGTERM])
def test_a_command_started_to_die_with_its_parent_ends_when_the_parent_is_killed(tmp_path: Path, signum) -> None:
    """The benchmark's worker (SIGKILL) and gpu_measurements' parts (SIGTERM, to stop their own children) are
    started so: a worker left training after its benchmark was killed outright competed with the next run for
    the cores and skewed its timings. The parent has another thread running, as a CUDA process has."""
    got = tmp_path / 'got'
    child_code = ('import signal, sys, time\n'
                  'signal.signal(signal.SIGTERM, lambda *_: (open(sys.argv[1], "w").write("TERM"), sys.exit(0)))\n'
                  'print("ready", flush=True)\n'
                  'time.sleep(120)\n')
    script = ('import os, subprocess, sys, threading, time\n'
              'from ipr_plugin.processes import command_dying_with_this_process\n'
              'threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n'
              f'argv = command_dying_with_this_process([sys.executable, "-c", {child_code!r}, {str(got)!r}], '
              f'{int(signum)})\n'
              'child = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE, text=True)\n'
              'assert child.stdout.readline() == "ready\\n"\n'
              'print(child.pid, flush=True)\n'
              'time.sleep(120)\n')
    parent = subprocess.Popen([sys.executable, '-c', script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(parent.stdout.readline())
        # the command itself, under the pid Popen gave: what kills the session kills it
        assert b'prctl' not in Path(f'/proc/{child}/cmdline').read_bytes() and os.getpgid(child) == child
        parent.kill()
        parent.wait(30)
        assert _gone(child, 30), 'the child outlived its parent'
        assert got.exists() == (signum == signal.SIGTERM)  # SIGTERM reached it, and it could act on it
    finally:
        parent.kill()
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux only')
def test_a_command_started_to_die_with_its_parent_otherwise_runs_as_started_directly(tmp_path: Path) -> None:
    """The Python in between ignores SIGPIPE and SIGXFSZ, which exec keeps: a shell pipeline behind it would not
    end on a closed pipe. A missing command is named as Popen names it."""
    from ipr_plugin.processes import command_dying_with_this_process
    probe = ['sh', '-c', 'grep -E "^Sig(Ign|Blk)" /proc/self/status; echo "$0 $PWD"']
    direct = subprocess.run(probe, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    wrapped = subprocess.run(command_dying_with_this_process(probe), cwd=tmp_path, capture_output=True, text=True,
                             check=True).stdout
    assert wrapped == direct and f'sh {tmp_path}' in wrapped
    with pytest.raises(FileNotFoundError, match='no-such-command'):
        command_dying_with_this_process(['no-such-command', '--help'])


def _fill_past_file_size_limit(script_body: str, path: Path) -> subprocess.CompletedProcess:
    """Run ``script_body`` (given ``path``) with files limited to 2000 bytes past ``path``'s size: a full disk."""
    script = ('import os, resource, signal, sys\n'
              'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead\n'
              'path = sys.argv[1]\n'
              + script_body.replace('LIMIT', 'resource.setrlimit(resource.RLIMIT_FSIZE, '
                                             '(os.path.getsize(path) + 2000, resource.RLIM_INFINITY))'))
    return subprocess.run([sys.executable, '-c', script, str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)


def test_a_section_that_cannot_be_written_whole_leaves_benchmarks_md_as_it_was(tmp_path: Path) -> None:
    """A full disk mid-append left a cut table in BENCHMARKS.md, and the next tool's section ran on from it."""
    path = tmp_path / 'BENCHMARKS.md'
    path.write_text('# Benchmarks\n\n| a | b |\n|---|---|\n| 1 | 2 |\n')
    before = path.read_bytes()
    done = _fill_past_file_size_limit('from ipr_plugin.markdown import append_section\n'
                                      'LIMIT\n'
                                      "append_section(path, '| row | 6 |\\n' * 1000)\n", path)
    assert done.returncode != 0 and 'File too large' in done.stderr, done.stderr[-2000:]
    assert path.read_bytes() == before


def test_a_picture_that_cannot_be_written_whole_leaves_the_earlier_one(tmp_path: Path) -> None:
    """The benchmark's --plot and the study's calibration plot (docs/calibration.png) were saved in place: a full
    disk left a truncated PNG where a good one had been."""
    from PIL import Image
    path = tmp_path / 'plot.png'
    Image.new('RGB', (8, 8)).save(path)
    before = path.read_bytes()
    done = _fill_past_file_size_limit('from ipr_plugin.plotting import pyplot, save_figure\n'
                                      'import numpy as np\n'
                                      'fig = pyplot().figure(figsize=(12, 12))\n'
                                      'fig.add_subplot().imshow(np.random.default_rng(0).random((600, 600, 3)))\n'
                                      'LIMIT\n'
                                      'save_figure(fig, path, dpi=100)\n', path)
    assert done.returncode != 0 and 'File too large' in done.stderr, done.stderr[-2000:]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['plot.png']  # no partial file left


def test_ctrl_c_ends_a_tool_with_one_line_and_status_130(tmp_path: Path) -> None:
    """Every tool printed a traceback on Ctrl-C (the renderers' and loaders' own ones besides)."""
    out = tmp_path / 'synth'
    proc = _writer_under_way(out)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
        _, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130
    assert 'Traceback' not in err and err.strip().splitlines()[-1] == 'make_synthetic_coco: interrupted', err


def test_a_data_check_worker_leaves_ctrl_c_to_the_checking_process() -> None:
    """Ctrl-C reaches every process of the group: each loading worker printed its own traceback. The checking
    process stops them itself."""
    import multiprocessing

    from ipr_plugin.apis.data_check import _Worker
    worker = _Worker(multiprocessing.get_context('fork'), None)
    try:
        deadline = time.monotonic() + 60
        # both set (SIGTERM last): a background job's processes ignore SIGINT from the start
        while not all(_ignores(worker.process.pid, s) for s in (signal.SIGINT, signal.SIGTERM)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        for signum in (signal.SIGINT, signal.SIGTERM):
            os.kill(worker.process.pid, signum)
        worker.process.join(2)
        assert worker.process.is_alive()
        worker.close()
        assert worker.process.exitcode == 0
    finally:
        if worker.process.is_alive():
            worker.process.kill()


def test_a_tool_called_from_python_leaves_ctrl_c_and_sigterm_to_its_caller(capsys) -> None:
    """A script or notebook looping over a tool's main() kept going after Ctrl-C (each call returned 130), and
    SIGTERM to it raised inside whatever ran next instead of stopping it."""
    from ipr_plugin.cli import tool_main

    @tool_main('probe')
    def main(argv=None) -> int:
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        main([])
    assert signal.getsignal(signal.SIGTERM) is before
    assert main() == 130 and capsys.readouterr().err.strip() == 'probe: interrupted'  # run as a program


def test_a_package_imported_from_a_zip_starts_the_command_itself(monkeypatch) -> None:
    """No file to run as the wrapper there: the plain command, not a wrapper that fails to start."""
    from ipr_plugin import processes
    assert processes.command_dying_with_this_process(['true'])[-1] == 'true'
    monkeypatch.setattr(processes, '__file__', '/opt/site.zip/ipr_plugin/processes.py')
    assert processes.command_dying_with_this_process(['true']) == ['true']

"""The accuracy study end to end: the real tool (tools/accuracy_study.py) in ``--tiny`` mode, as a subprocess.

Every variant trains with ``mim train`` for 3 iterations (the ones-rows re-evaluate with ``mim test``) into
temporary folders; a failure of any variant fails it. No accuracy is asserted: 3 iterations learn nothing.
"""
import argparse
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ipr_plugin.apis.study_configs import DEFAULT_VARIANTS, PREDICTIONS_FILE
from ipr_plugin.apis.study_rows import row_env_overrides
from utils import processes_mentioning

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / 'tools' / 'accuracy_study.py'
TIMEOUT = 900  # the run takes 2-3 minutes on 2 busy cores; this only stops a hung run
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
# fine-tuned rows, and the rows they start from (trained too)
FINE_TUNED = {'ours-Debias-ft': 'ours-JS-beta10', 'ours-Debias-hm': 'mmpose-SimpleBaseline'}
TINY_FLAGS = ('--curve-points', '2', '--keep-checkpoints', '--finetune-iters', '4')  # the tiny study's, beyond --tiny


def _env(path=()) -> dict:
    python_path = [*map(str, path), str(REPO_ROOT), os.environ.get('PYTHONPATH')]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, python_path)))


def _study(*args, path=(), env=None) -> subprocess.CompletedProcess:
    """Run ``tools/accuracy_study.py --tiny *args`` as a user would, the plugin (and ``path``) importable, with
    ``env`` added to the environment."""
    return subprocess.run([sys.executable, str(TOOL), '--tiny', *map(str, args)], cwd=str(REPO_ROOT),
                          env=dict(_env(path), **(env or {})), capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope='module')
def tiny_study(tmp_path_factory):
    base = tmp_path_factory.mktemp('accuracy_study')
    out = base / 'report'
    repo_json = REPO_ROOT / 'docs' / 'accuracy_study.json'
    repo_json_before = repo_json.stat().st_mtime if repo_json.exists() else None
    start = time.monotonic()
    # three rows at once: a row that needs another (its start, the model it re-evaluates) must wait for it
    proc = _study(*TINY_FLAGS, '--work-dir', base / 'work', '--out', out, '--variants', *DEFAULT_VARIANTS,
                  *FINE_TUNED, '--parallel', '3')
    print(f'tiny accuracy study: {time.monotonic() - start:.0f} s')
    repo_json_after = repo_json.stat().st_mtime if repo_json.exists() else None
    return dict(proc=proc, out=out, repo_untouched=repo_json_before == repo_json_after)


CITED = re.compile(r'^- Calibration plot: `(docs/calibration_[\d-]+\.png)`; per-variant numbers: '
                   r'`(docs/accuracy_study_[\d-]+\.json)`\.$', re.M)


def _fail_text(proc) -> str:
    return f'exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-4000:]}'


def test_tiny_study_succeeds_for_every_variant(tiny_study):
    proc = tiny_study['proc']
    assert proc.returncode == 0, _fail_text(proc)
    assert 'FAILED' not in proc.stdout, _fail_text(proc)
    for name in DEFAULT_VARIANTS:  # the printed table
        assert re.search(rf'^{re.escape(name)}\s+\d\.\d{{3}}\s', proc.stdout, re.M), _fail_text(proc)
    assert tiny_study['repo_untouched'], 'tiny mode wrote into the repository docs/'


def test_tiny_study_markdown(tiny_study):
    text = (tiny_study['out'] / 'BENCHMARKS.md').read_text()
    assert '--tiny' in text and 'tools/accuracy_study.py' in text  # the command
    assert re.search(r'\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC', text)  # the date
    assert re.search(r'Machine: .+, \d+ cores; GPU: none; torch \S+', text)  # the machine, as the benchmark's
    assert re.search(r'JPEG decode in IPRLoadImage: simplejpeg \d', text)  # the loader's decoder, which sets its speed
    rows = {m.group(1): m.group(2) for m in re.finditer(r'^\| ([\w-]+) \| ([^|]+) \|', text, re.M)}
    for name in DEFAULT_VARIANTS:
        assert name in rows, f'no row for {name}\n{text}'
        assert 0.0 <= float(rows[name].split()[0]) <= 1.0, f'{name}: AP cell {rows[name]!r}'
        # a diverged run is flagged; ours must never be one (mmpose's JS heads can be, even in 3 iterations)
        if '(NaN)' in rows[name]:
            assert name.startswith('mmpose-'), f'{name} produced NaN keypoints'
    assert re.search(r'^- Spearman \(keypoint score vs normalised error\), ours-L1', text, re.M), text
    (plot, numbers), = CITED.findall(text)  # this run's own files, copied to the latest study's names
    assert (tiny_study['out'] / plot).read_bytes() == (tiny_study['out'] / 'docs' / 'calibration.png').read_bytes()
    assert (tiny_study['out'] / numbers).read_text() == (tiny_study['out'] / 'docs' / 'accuracy_study.json').read_text()
    assert '| variant | AP @ 2 | AP @ 3 | AP @ 4 |' in text  # the AP curve (--curve-points 2; fine-tuned: 4 iters)
    assert 'mmpose-SimpleBaseline, ours-JS-beta10: 4 iterations from that row' in text  # --finetune-iters


def test_tiny_study_json(tiny_study):
    report = json.loads((tiny_study['out'] / 'docs' / 'accuracy_study.json').read_text())
    assert set(report['results']) == {*DEFAULT_VARIANTS, *FINE_TUNED, *FINE_TUNED.values()}
    for name, result in report['results'].items():
        assert result['error'] is None, f'{name}: {result["error"]}'
        run = result['seeds']['0']
        for key in ('AP', 'AP50', 'AP75', 'AR'):
            assert 0.0 <= run[key] <= 1.0, f'{name} {key}={run[key]}'
        if not name.endswith('-ones'):
            iters = [2, 4] if name in FINE_TUNED else [2, 3]  # --finetune-iters 4, evaluated every 2 like the rest
            assert run['train_time_s'] > 0 and [p['iter'] for p in run['curve']] == iters
            assert Path(run['checkpoint']).is_file()  # --keep-checkpoints
            # mmengine's scalars log the AP at the iteration of each evaluation (TensorBoard draws the curve)
            scalars = list(Path(run['work_dir']).glob('mmengine/*/vis_data/scalars.json'))
            records = [json.loads(line) for line in scalars[0].read_text().splitlines()]
            assert [r['step'] for r in records if 'coco/AP' in r] == iters, name
    for trained in ('ours-L1', 'ours-JS'):  # the same models, not retrained
        assert report['results'][f'{trained}-ones']['seeds']['0']['evaluated'] == \
            report['results'][trained]['seeds']['0']['checkpoint']
    # a fine-tuned row started from its source's final weights, and mmengine loaded every one of them (from the
    # heatmap model too: its head's layers have other names, see tests/test_mmpose_compat.py)
    for name, source in FINE_TUNED.items():
        start = report['results'][source]['seeds']['0']['checkpoint']
        fine_tuned = report['results'][name]['seeds']['0']
        assert fine_tuned['init_from'] == start and Path(start).is_file()
        assert report['results'][name]['start'] == source  # the plot draws the row on from its start
        logs = list(Path(fine_tuned['work_dir']).glob('mmengine/*/*.log'))
        assert len(logs) == 1 and f'Load checkpoint from {start}' in logs[0].read_text()
        assert 'do not match exactly' not in logs[0].read_text(), name
    (cal, *_) = report['calibration']
    assert cal['variant'] == 'ours-L1' and cal['num_keypoints'] > 0 and cal['bins']
    assert cal['spearman'] is None or -1.0 <= cal['spearman'] <= 1.0  # nan is written as null


def test_tiny_study_plot_is_a_png(tiny_study):
    data = (tiny_study['out'] / 'docs' / 'calibration.png').read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b'IHDR'
    width, height = struct.unpack('>II', data[16:24])
    assert width > 100 and height > 100


def test_a_spent_time_limit_starts_no_run_and_still_writes_the_report(tmp_path):
    """``--time-limit`` spent before the first run: every row says so, and the report is written anyway."""
    out = tmp_path / 'report'
    proc = _study('--variants', 'ours-L1', 'ours-L1-ones', '--time-limit', '0.001', '--work-dir', tmp_path / 'work',
                  '--out', out)
    assert proc.returncode == 1, _fail_text(proc)  # a study that did not run its rows did not succeed
    assert '[ours-L1] CUT OFF: not run: --time-limit 0.001 s reached' in proc.stdout, _fail_text(proc)
    assert '[ours-L1-ones] CUT OFF: ours-L1 did not train' in proc.stdout, _fail_text(proc)
    report = json.loads((out / 'docs' / 'accuracy_study.json').read_text())
    assert report['results']['ours-L1']['error'] == 'not run: --time-limit 0.001 s reached'
    assert report['results']['ours-L1-ones']['error'] == 'ours-L1 did not train'
    assert not (tmp_path / 'work' / 'runs' / 'ours-L1' / 'seed0' / 'mmengine').exists()  # mim never started
    section = (out / 'BENCHMARKS.md').read_text()
    assert 'not run: --time-limit' in section and '| ours-L1-ones | cut off |' in section


def test_a_later_study_into_the_same_folder_keeps_the_files_an_earlier_section_cites(tiny_study, tmp_path):
    """Every study wrote ``docs/calibration.png`` and ``docs/accuracy_study.json``: a second one into the same
    ``--out`` replaced the picture and numbers the first one's section in BENCHMARKS.md names."""
    assert tiny_study['proc'].returncode == 0, _fail_text(tiny_study['proc'])
    out = tmp_path / 'report'
    shutil.copytree(tiny_study['out'], out)
    proc = _study('--variants', 'ours-L1', '--time-limit', '0.001', '--work-dir', tmp_path / 'work', '--out', out)
    assert proc.returncode == 1 and 'CUT OFF' in proc.stdout, _fail_text(proc)  # nothing trained, report written
    (plot0, numbers0), (plot1, numbers1) = CITED.findall((out / 'BENCHMARKS.md').read_text())
    assert plot0 != plot1 and numbers0 != numbers1
    assert set(json.loads((out / numbers0).read_text())['results']) == set(
        json.loads((tiny_study['out'] / 'docs' / 'accuracy_study.json').read_text())['results'])
    assert (out / plot0).read_bytes() == (tiny_study['out'] / plot0).read_bytes()
    assert set(json.loads((out / numbers1).read_text())['results']) == {'ours-L1'}
    assert (out / 'docs' / 'accuracy_study.json').read_bytes() == (out / numbers1).read_bytes()  # the latest
    assert (out / 'docs' / 'calibration.png').read_bytes() == (out / plot1).read_bytes()


def test_reuse_reads_a_fine_tuned_row_and_its_start_without_training(tiny_study, tmp_path):
    """``--reuse`` over the tiny study's runs: the fine-tuned row and the model it starts from are read back (a
    spent ``--time-limit`` proves that nothing trained), with the same results as the first run."""
    assert tiny_study['proc'].returncode == 0, _fail_text(tiny_study['proc'])
    work = tiny_study['out'].parent / 'work'
    out = tmp_path / 'report'
    proc = _study(*TINY_FLAGS, '--work-dir', work, '--out', out, '--variants', 'ours-Debias-ft', '--reuse',
                  '--time-limit', '0.001')
    assert proc.returncode == 0 and 'FAILED' not in proc.stdout, _fail_text(proc)
    for name in ('ours-JS-beta10', 'ours-Debias-ft'):
        assert f'[{name}] reusing the finished run' in proc.stdout, _fail_text(proc)
    first = json.loads((tiny_study['out'] / 'docs' / 'accuracy_study.json').read_text())['results']
    again = json.loads((out / 'docs' / 'accuracy_study.json').read_text())['results']
    for name in ('ours-JS-beta10', 'ours-Debias-ft'):
        run, run0 = again[name]['seeds']['0'], first[name]['seeds']['0']
        assert run['reused'] and not run0['reused']
        assert {k: run[k] for k in ('AP', 'AR', 'curve', 'checkpoint')} == \
            {k: run0[k] for k in ('AP', 'AR', 'curve', 'checkpoint')}
    assert again['ours-Debias-ft']['seeds']['0']['init_from'] == first['ours-JS-beta10']['seeds']['0']['checkpoint']
    # a row whose weights were kept (--keep-checkpoints) is reused by a study that does not keep them: whether the
    # last weights are saved changes nothing the run computes
    flags = [flag for flag in TINY_FLAGS if flag != '--keep-checkpoints']
    proc = _study(*flags, '--work-dir', work, '--out', tmp_path / 'report1', '--variants', 'ours-JS', '--reuse',
                  '--time-limit', '0.001')
    assert proc.returncode == 0 and '[ours-JS] reusing the finished run' in proc.stdout, _fail_text(proc)
    # the split rewritten in the same folder (another data seed): the config names the same files, but a run
    # trained and evaluated on the old split must not be read as this one's (ours-L1: no later test reads it)
    proc = _study(*TINY_FLAGS, '--work-dir', work, '--out', tmp_path / 'report2', '--variants', 'ours-L1',
                  '--reuse', '--data-seed', '1', '--time-limit', '0.001')
    assert 'writing the hard synthetic split' in proc.stdout, _fail_text(proc)
    assert 'reusing the finished run' not in proc.stdout, _fail_text(proc)
    assert '[ours-L1] CUT OFF: not run: --time-limit' in proc.stdout, _fail_text(proc)


def _in_train_py(tmp_path, imports: str, *lines: str):
    """A folder with a ``sitecustomize`` that runs ``lines`` in mmpose's ``train.py`` only (not in the
    ``train.py -h`` that mim runs first); put it on the study's ``path``."""
    site = tmp_path / 'site'
    site.mkdir()
    guard = "if sys.argv[0].replace('\\\\', '/').endswith('tools/train.py') and '-h' not in sys.argv:"
    (site / 'sitecustomize.py').write_text('\n'.join([f'import sys; {imports}', guard, *(f'    {ln}' for ln in lines)])
                                           + '\n')
    return site


LINGER_LIMIT = 120  # s: the tiny training reaches its final evaluation well within it, also on a loaded machine


def test_a_run_stopped_at_its_timeout_after_its_final_evaluation_keeps_its_results(tmp_path):
    """mmpose's train.py lingering at exit after writing everything (here it sleeps in an atexit handler, loaded
    through ``sitecustomize``; not in the ``train.py -h`` that mim runs first) is stopped at ``--timeout``; the
    row is kept, and the row re-evaluating its checkpoint runs."""
    site = _in_train_py(tmp_path, 'import atexit, time', 'atexit.register(time.sleep, 600)')
    out = tmp_path / 'report'
    # the time limit leaves the tiny training time to reach its final evaluation on a loaded 2-core machine (at 60 s
    # it was cut off before it, under a full test run beside other work)
    proc = _study('--variants', 'ours-L1', 'ours-L1-ones', '--timeout', str(LINGER_LIMIT),
                  '--work-dir', tmp_path / 'work', '--out', out, path=[site])
    assert proc.returncode == 0 and 'FAILED' not in proc.stdout, _fail_text(proc)
    assert '[ours-L1] stopped at the time limit after its final evaluation; its results are kept' in proc.stdout
    results = json.loads((out / 'docs' / 'accuracy_study.json').read_text())['results']
    run = results['ours-L1']['seeds']['0']
    assert run['wall_s'] >= LINGER_LIMIT and run['train_time_s'] < LINGER_LIMIT  # it was stopped, not finished
    assert run['curve'][-1]['iter'] == 3 and run['AP'] is not None
    assert results['ours-L1-ones']['seeds']['0']['evaluated'] == run['checkpoint']


def test_rows_run_at_once_compute_what_rows_run_one_by_one(tiny_study, tmp_path):
    """Three rows of the (``--parallel 3``) tiny study trained again one after another, with the same flags:
    the same predictions, to the bit. One of them is fine-tuned from another's weights: had it started before
    its start was written, it would have failed or started from other weights."""
    assert tiny_study['proc'].returncode == 0, _fail_text(tiny_study['proc'])
    rows = ['mmpose-IPR', 'ours-JS-beta10', 'ours-Debias-ft']
    # with the CPU threads each of the three rows at once had: a thread count changes the CPU kernels' sums
    threads = {k: v for k, v in row_env_overrides(argparse.Namespace(parallel=3, device='cpu')).items()
               if k == 'OMP_NUM_THREADS'}  # none where the environment sets it for both runs
    proc = _study(*TINY_FLAGS, '--work-dir', tmp_path / 'work', '--out', tmp_path / 'report', '--variants', *rows,
                  env=threads)
    assert proc.returncode == 0 and 'FAILED' not in proc.stdout, _fail_text(proc)
    parallel = tiny_study['out'].parent / 'work' / 'runs'
    for name in rows:
        ours, ref = (pickle.loads((base / name / 'seed0' / PREDICTIONS_FILE).read_bytes())
                     for base in (parallel, tmp_path / 'work' / 'runs'))
        assert [p['id'] for p in ours] == [p['id'] for p in ref]
        for key in ('keypoints', 'keypoint_scores'):
            np.testing.assert_array_equal(np.stack([p['pred_instances'][key] for p in ours]),
                                          np.stack([p['pred_instances'][key] for p in ref]), err_msg=name)


def test_a_row_cut_off_after_an_evaluation_reports_it(tmp_path):
    """A training stopped at ``--timeout`` between two evaluations (here StudyRecordHook, patched through
    ``sitecustomize`` in mmpose's ``train.py`` only, sleeps after the first) is reported as cut off, with the AP
    of the evaluation it made, in the log, the table and the JSON."""
    site = _in_train_py(tmp_path, 'import time', 'from ipr_plugin.apis import study_record_hook',
                        'write = study_record_hook.StudyRecordHook.after_val_epoch',
                        'def after_val_epoch(self, runner, metrics=None):',
                        '    write(self, runner, metrics)',
                        '    time.sleep(600)',
                        'study_record_hook.StudyRecordHook.after_val_epoch = after_val_epoch')
    out = tmp_path / 'report'
    proc = _study('--variants', 'ours-L1', '--curve-points', '2', '--timeout', '60', '--work-dir', tmp_path / 'work',
                  '--out', out, path=[site])
    assert proc.returncode == 1, _fail_text(proc)
    message = re.search(r'cut off by its time limit after 60 s; its last evaluation: AP (\d\.\d{3}) at iteration 2',
                        proc.stdout)
    assert message, _fail_text(proc)
    result = json.loads((out / 'docs' / 'accuracy_study.json').read_text())['results']['ours-L1']
    assert result['error'] == message.group(0) and result['seeds'] == {}
    assert [(p['iter'], f'{p["AP"]:.3f}') for p in result['cut_off']['0']] == [(2, message.group(1))]
    assert '| ours-L1 | cut off |' in (out / 'BENCHMARKS.md').read_text()


@pytest.mark.skipif(not Path('/proc/self/cmdline').exists(), reason='reads the process table from /proc')
def test_stopping_the_study_stops_every_row_it_runs(tmp_path):
    """SIGTERM (``timeout``, a job scheduler) while two rows train at once: the study exits with one line, and no
    training it started is left running (each row runs in its own session, which the study's own exit does not
    reach)."""
    work = tmp_path / 'work'
    proc = subprocess.Popen([sys.executable, str(TOOL), '--tiny', '--variants', 'mmpose-IPR', 'ours-L1', '--parallel',
                             '2', '--iters', '100000', '--work-dir', str(work), '--out', str(tmp_path / 'report')],
                            cwd=str(REPO_ROOT), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen, lines, deadline = set(), [], time.monotonic() + TIMEOUT
    try:
        for line in proc.stdout:  # until both rows have logged a training iteration
            lines.append(line)
            seen |= {name for name in ('mmpose-IPR', 'ours-L1') if f'[{name}] Iter(train)' in line}
            if seen == {'mmpose-IPR', 'ours-L1'} or time.monotonic() > deadline:
                break
        assert seen == {'mmpose-IPR', 'ours-L1'}, ''.join(lines[-40:])
        assert len(processes_mentioning(str(work / 'runs'))) >= 2  # both trainings, seen by this very scan
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        after = proc.stdout.read()
    finally:
        proc.kill()
        proc.stdout.close()
    assert proc.returncode == 128 + signal.SIGTERM
    # the rows it killed itself are no failures to report, only the study's own end
    assert 'FAILED' not in after and 'CUT OFF' not in after and after.rstrip().endswith('terminated'), after
    time.sleep(1)  # SIGKILL is delivered at once; give the kernel a moment to reap
    assert processes_mentioning(str(work / 'runs')) == []

"""The benchmark tool: a real ``--tiny`` run of mmpose's IPR config and ours, plus its config overrides and its
append-only report. No speed is asserted, only that every measured cell holds a positive number."""
import dataclasses
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ipr_plugin.benchmark.cli import given_val_split
from ipr_plugin.benchmark.spec import ANCHOR_CONFIG, OURS_CONFIG, OURS_FAST_CONFIG, WorkerSpec, resolve_config_path
from utils import processes_mentioning

REPO_ROOT = Path(__file__).resolve().parents[1]
MEASURED_ROWS = ('(a) train img/s', '(b) loader samples/s', '(c) eval img/s (flip)', '(d) CPU pipeline ms/sample',
                 '(e) CPU test pipeline ms/sample', '(f) main process: train samples to device, ms/sample',
                 '(f) main process: val samples to device, ms/sample',
                 '(f) main process: val predictions to metric, ms/sample',
                 '(g) final COCO evaluation, s (images as in the settings)', '(g) final COCO evaluation, instances/s')


def _table_rows(markdown: str, first_header: str) -> Dict[str, List[str]]:
    """The markdown table whose header starts with ``first_header``: row label -> cells."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'| {first_header} |'))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, coco_sample) -> Dict[str, Any]:
    # evaluation and the test pipeline on the real COCO sample, with the real detector's boxes
    out = tmp_path_factory.mktemp('bench') / 'B.md'
    val_data = [str(coco_sample / name) for name in ('test_coco.json', '.', 'test_coco_det_AP_H_56.json')]
    cmd = [sys.executable, 'tools/benchmark.py', '--tiny', '--configs', ANCHOR_CONFIG, OURS_CONFIG,
           '--val-data', *val_data, '--out', str(out), '--label', 'pytest tiny', '--rounds', '2',
           '--plot', str(out.with_suffix('.png'))]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return dict(markdown=out.read_text(), stdout=proc.stdout, plot=out.with_suffix('.png'))


def test_tiny_run_measures_every_cell(tiny_run: Dict[str, str]) -> None:
    rows = _table_rows(tiny_run['markdown'], 'metric')
    for label in MEASURED_ROWS:
        mmpose, ours, ratio = rows[label]
        assert float(mmpose) > 0 and float(ours) > 0 and float(ratio) > 0, (label, rows[label])
    for label in ('(a) main process waiting for batches (% of train window)',
                  '(c) main process waiting for batches (% of eval window)'):
        assert all(0 <= float(v) <= 100 for v in rows[label][:2]), (label, rows[label])
    # On the CPU there is no GPU memory or utilisation to report.
    assert rows['peak GPU memory, train (MiB)'][:2] == ['n/a', 'n/a']
    steps = _table_rows(tiny_run['markdown'], 'step (ms/sample, 1 thread)')
    for step in ('LoadImage', 'TopdownAffine', 'GenerateTarget', 'PackPoseInputs', 'total'):
        assert all(float(v) > 0 for v in steps[step][:2]), (step, steps[step])
    test_steps = _table_rows(tiny_run['markdown'], 'test pipeline step (ms/sample, 1 thread)')
    assert 'GenerateTarget' not in test_steps
    for step in ('LoadImage', 'TopdownAffine', 'PackPoseInputs', 'total'):
        assert all(float(v) > 0 for v in test_steps[step][:2]), (step, test_steps[step])


def test_tiny_run_section_has_command_date_and_machine(tiny_run: Dict[str, str]) -> None:
    markdown = tiny_run['markdown']
    today = datetime.now(timezone.utc).strftime('%Y-%m-%d')
    assert markdown.startswith('# Benchmarks')
    assert re.search(rf'^## {today} \d\d:\d\d UTC — pytest tiny$', markdown, re.M)
    assert f'- Command: `python tools/benchmark.py --tiny --configs {ANCHOR_CONFIG} {OURS_CONFIG}' in markdown
    assert f'- Date: {today}' in markdown
    assert re.search(r'^- Machine: .+, \d+ cores; GPU: none; torch \S+', markdown, re.M)
    assert re.search(r"^- Of \(g\)'s val dataset build, the input checks, each run again on its own \(s\): "
                     r'ours \(IPRCocoDataset\): annotation file read, keypoint counts [\d.e-]+, detection file read '
                     r'[\d.e-]+, detection entries [\d.e-]+$', markdown, re.M), markdown
    # the loader's speed depends on the decoder, and the test set-up installs simplejpeg
    assert re.search(r'^- Machine: .+; JPEG decode in IPRLoadImage: simplejpeg \d.*, of training crops\' regions '
                     r'\(decode_region\): libjpeg-turbo \d', markdown, re.M)
    assert 'ResNet-18' in markdown  # the tiny run's smaller backbone is said in the header
    # the fast config's 'by region (IPRTopdownAffine)': test_jpeg_region_pipeline.py
    for name in ('mmpose IPR', 'ours'):
        assert re.search(rf'^  - {name}: .*train_decode whole \(LoadImage\)\)$', markdown, re.M), markdown
    assert "- Of (g), xtcocotools' own steps as it timed them (s): mmpose IPR (CocoMetric): load results" in markdown
    assert re.search(r'val split given with --val-data: `[^`]*test_coco.json`, 4 val images \(118 detector '
                     r'boxes, 29.5 per image\)', markdown)
    # the same section is printed, and nothing else: the workers' output goes to stderr
    markdown = tiny_run['markdown']
    assert tiny_run['stdout'].strip() == markdown[markdown.index('## '):].strip()
    # --rounds 2: (d) and (e) again in fresh workers, each round's totals and its ratio listed
    for title in ('(d) CPU pipeline', '(e) CPU test pipeline'):
        assert re.search(rf'^- {re.escape(title)}, total ms/sample by round: mmpose IPR [\d.]+, [\d.]+; ours [\d.]+, '
                         r'[\d.]+; ours / mmpose IPR by round [\d.]+, [\d.]+ \(median [\d.]+, highest [\d.]+\)$',
                         markdown, re.M), (title, markdown[:3000])
    assert f'- Plot of (d) and (e): `{tiny_run["plot"]}`' in markdown
    assert tiny_run['plot'].read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # where each Runner measurement's time outside its window went, for both configs
    phases = re.search(r'^- Outside the windows \(s\): (.+)$', markdown, re.M)
    assert phases, markdown[:3000]
    for name in ('mmpose IPR', 'ours'):  # the columns' names
        for key in ('train', 'eval'):
            assert re.search(rf'{re.escape(name)} {key}: build [\d.e-]+, to window [\d.e-]+, after window '
                             r'[\d.e-]+, teardown [\d.e-]+', phases.group(1)), (name, key, phases.group(1))


class _Zeros:
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int):
        import torch
        return torch.zeros(3)


@pytest.mark.parametrize('persistent', [True, False])
def test_stop_workers_ends_every_loader_worker(persistent: bool) -> None:
    from torch.utils.data import DataLoader

    from ipr_plugin.benchmark.measure import _stop_workers
    loader = DataLoader(_Zeros(), batch_size=4, num_workers=2, persistent_workers=persistent)
    it = iter(loader)
    next(it)
    workers = list(it._workers)
    assert all(w.is_alive() for w in workers)
    # persistent: the loader holds the iterator; otherwise only the caller (mmengine's loop) does
    _stop_workers(loader, *([] if persistent else [it]))
    assert not any(w.is_alive() for w in workers)
    _stop_workers(loader, it)  # a second call, and a single-process loader, are no-ops
    _stop_workers(DataLoader(_Zeros(), num_workers=0))


def test_overrides_point_at_data_and_drop_pretrained(tmp_path: Path) -> None:
    from ipr_plugin.benchmark.overrides import added_hooks, eval_only, load_bench_config, train_only
    from ipr_plugin.engine import CompileHook, FiniteLossHook
    data = dict(root=str(tmp_path), train_ann_file='/d/tr.json', val_ann_file='/d/va.json', train_img_dir='/d/tr',
                val_img_dir='/d/va', bbox_file='/d/det.json')
    spec = WorkerSpec(name='x', config=resolve_config_path(ANCHOR_CONFIG), data=data, batch_size=5, workers=0,
                      warmup=2, iters=3, device='cpu', work_dir=str(tmp_path), result_file='r.json')
    cfg = load_bench_config(spec)
    assert 'Pretrained' not in str(cfg.model)
    assert cfg.model.test_cfg.flip_test is True
    assert cfg.train_dataloader.batch_size == cfg.val_dataloader.batch_size == 5
    assert cfg.train_dataloader.persistent_workers is False  # torch refuses it without workers
    assert cfg.train_dataloader.dataset.ann_file == '/d/tr.json'
    assert cfg.val_dataloader.dataset.bbox_file == '/d/det.json'
    assert cfg.val_dataloader.dataset.indices == 25
    assert cfg.val_evaluator.ann_file == '/d/va.json'
    assert cfg.train_cfg.max_iters == 5
    assert cfg.default_hooks.checkpoint.interval == -1 and not cfg.default_hooks.checkpoint.save_last
    assert train_only(cfg).val_dataloader is None and eval_only(cfg).optim_wrapper is None
    assert cfg.val_dataloader is not None  # the copies leave the config alone
    # a config with mmpose's drawing hook switched off, and the hooks the benchmark's table lists
    spec = dataclasses.replace(spec, config=resolve_config_path(OURS_FAST_CONFIG),
                               cfg_options={'default_hooks.visualization': None})
    cfg = load_bench_config(spec)
    assert cfg.default_hooks.visualization is None
    cfg.default_hooks.finite_loss = FiniteLossHook()
    cfg.custom_hooks.append(dict(type=CompileHook))
    assert added_hooks(cfg) == ['FiniteLossHook', 'CheckpointFitHook', 'MetricKeyCheckHook', 'CropSizeCheckHook',
                                'IPRRuntimeInfoHook', 'ChannelsLastHook', 'IPRTestCollateHook', 'SyncBuffersHook',
                                'CompileHook']


def test_given_val_split_counts_the_files_and_names_a_missing_one(coco_sample: Path, tmp_path: Path) -> None:
    split = given_val_split(str(coco_sample / 'test_coco.json'), str(coco_sample),
                            str(coco_sample / 'test_coco_det_AP_H_56.json'))
    assert (split['num_val_images'], split['num_val_instances'], split['num_detections']) == (4, 14, 118)
    missing = tmp_path / 'missing_boxes.json'
    with pytest.raises(FileNotFoundError, match='missing_boxes.json does not exist'):
        given_val_split(str(coco_sample / 'test_coco.json'), str(coco_sample), str(missing))
    # the command line refuses a wrong file in one line, before it writes the synthetic set
    for ann, boxes, message in (
            (coco_sample / 'test_coco_det_AP_H_56.json', coco_sample / 'test_coco_det_AP_H_56.json',
             'annotation file .*test_coco_det_AP_H_56.json: holds a list, not a COCO object'),
            (coco_sample / 'test_coco.json', coco_sample / 'test_coco.json',
             'detection file .*test_coco.json holds a dict, not a list of detections'),
            (coco_sample / 'test_coco.json', missing, '.*missing_boxes.json does not exist')):
        proc = subprocess.run([sys.executable, 'tools/benchmark.py', '--tiny', '--val-data', str(ann), str(coco_sample),
                               str(boxes)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert re.search(f'error: argument --val-data: {message}', proc.stderr), proc.stderr[-2000:]


def test_windows_shorter_than_three_worker_rounds_are_flagged() -> None:
    from argparse import Namespace
    from ipr_plugin.benchmark.cli import worker_wave_caveats
    data = dict(num_detections=1960)  # 16 val batches of 128
    short = Namespace(workers=14, iters=20, warmup=6, batch_size=128, skip=[])  # the first H100 run's windows
    lines = worker_wave_caveats(short, data)
    assert len(lines) == 2 and '(a) and (b) window holds 20 batches' in lines[0] and '(42 batches)' in lines[0]
    assert '(c) window holds 10 batches' in lines[1]
    assert worker_wave_caveats(Namespace(workers=14, iters=60, warmup=20, batch_size=64, skip=[]),
                               dict(num_detections=5200)) == []
    assert worker_wave_caveats(Namespace(**dict(vars(short), skip=['train', 'loader', 'eval'])), data) == []
    assert worker_wave_caveats(Namespace(**dict(vars(short), workers=0)), data) == []


def test_window_counts_the_wait_for_batches_inside_the_window_only(monkeypatch) -> None:
    """The hook driven in the order of mmengine's train loop (fetch, before_iter, step, after_iter) on a clock
    the test moves: a loader that takes 30 ms per batch and a 10 ms step give a wait of 30 ms per window
    iteration, and none of the warm-up's or the iterations after the window."""
    from ipr_plugin.benchmark import timing
    now = [100.0]
    monkeypatch.setattr(timing.time, 'perf_counter', lambda: now[0])
    hook = timing.WindowTimerHook('train', warmup=2, iters=3, cuda=False)
    batch = dict(data_samples=[None] * 4)
    for index in range(7):
        now[0] += 0.2 if index in (0, 1, 5, 6) else 0.03  # slow fetches outside the window
        hook.before_train_iter(None, index, batch)
        now[0] += 0.01
        hook.after_train_iter(None, index, batch)
    result = hook.result()
    assert result['samples'] == 12 and result['iters'] == 3
    assert result['data_wait_s'] == pytest.approx(0.09)  # three 30 ms fetches, not one of the 200 ms ones
    assert result['elapsed_s'] == pytest.approx(0.12)  # the window: three fetches and three steps
    assert result['data_wait_pct'] == pytest.approx(100 * result['data_wait_s'] / result['elapsed_s'])


def test_skipped_windows_get_no_caveats_and_skipped_pipelines_no_table() -> None:
    from argparse import Namespace
    from ipr_plugin.benchmark.cli import settings_lines
    from ipr_plugin.benchmark.report import render_section
    args = Namespace(warmup=20, iters=60, batch_size=64, workers=2, pipeline_samples=256, seed=0, device='cpu',
                     cfg_options=None, tiny=False, skip=[], time_limit=None, metric_images=5000, rounds=1)
    data = dict(num_train_images=300, num_train_instances=764, num_val_images=50, num_detections=150)
    assert sum(line.startswith('Caveat') for line in settings_lines(args, data)) == 3  # 2 sizes, eval rounds
    args.skip = ['train', 'loader', 'eval', 'pipeline', 'test_pipeline']
    assert not any(line.startswith('Caveat') for line in settings_lines(args, data))
    host_only = [dict(name='a', config='a.py', host=dict(train_ms_per_sample=0.1, val_ms_per_sample=0.1,
                                                          val_post_ms_per_sample=0.05))]
    section = render_section(host_only, 'cmd', [])
    assert '| (f) main process: val predictions to metric, ms/sample | 0.05 |' in section
    assert 'step (ms/sample' not in section
    args.time_limit = 300
    assert settings_lines(args, data)[1].endswith('; time limit 300 s, shared equally by the configs still to run')


def test_final_evaluation_measure_runs_each_configs_metric_on_the_same_predictions(tmp_path: Path) -> None:
    from mmengine.config import Config
    from ipr_plugin.benchmark.measure import measure_metric
    results = {}
    for index, config in enumerate((ANCHOR_CONFIG, OURS_CONFIG)):
        (tmp_path / str(index)).mkdir()
        cfg = Config.fromfile(resolve_config_path(config))
        results[config] = measure_metric(cfg, 30, str(tmp_path / str(index)), seed=0)
    anchor, ours = results[ANCHOR_CONFIG], results[OURS_CONFIG]
    assert (anchor['metric'], ours['metric']) == ('CocoMetric', 'IPRCocoMetric')
    assert anchor['instances'] == ours['instances'] == 30 * 21
    assert 0 < anchor['ap'] < 1 and ours['ap'] == anchor['ap']  # the same result, computed differently
    assert ours['per_s'] == pytest.approx(ours['instances'] / ours['compute_s'])
    assert list(ours['cocoeval_s']) == ['load results', 'evaluate', 'accumulate']
    assert sum(ours['cocoeval_s'].values()) <= ours['compute_s'] + 0.05  # xtcocotools rounds to 10 ms
    # each config's own dataset class, built from the same detection file: one sample per detector box
    assert (anchor['dataset'], ours['dataset']) == ('CocoDataset', 'IPRCocoDataset')
    assert anchor['dataset_len'] == ours['dataset_len'] == 30 * 21
    assert anchor['dataset_s'] > 0 and ours['dataset_s'] > 0
    assert anchor['dataset_checks_s'] == {}
    assert list(ours['dataset_checks_s']) == ['annotation file read, keypoint counts', 'detection file read',
                                              'detection entries']
    assert all(s > 0 for s in ours['dataset_checks_s'].values())
    for result in (anchor, ours):
        # made again in the same process: the same AP, and memory measured (Linux's high-water mark)
        assert result['ap_again'] == result['ap'] and result['again_s'] > 0
        assert result['peak_mib'] >= 0 and result['kept_mib'] is not None  # a small set may reuse freed pages
        # the train split at COCO's train/val ratio, one sample per annotated person (about 1.2 per image)
        assert result['train_images'] == round(30 * 118287 / 5000)
        assert 0.8 * result['train_images'] < result['train_dataset_len'] < 1.6 * result['train_images']
        assert result['train_dataset_s'] > 0 and result['train_dataset_peak_mib'] >= 0
    assert anchor['train_dataset_len'] == ours['train_dataset_len']


def test_final_evaluation_measure_builds_the_dataset_inside_a_wrapper(tmp_path: Path) -> None:
    from mmengine.config import Config
    from ipr_plugin.benchmark.measure import measure_metric
    cfg = Config.fromfile(resolve_config_path(OURS_CONFIG))
    cfg.train_dataloader.dataset = dict(type='RepeatDataset', times=2, dataset=cfg.train_dataloader.dataset)
    result = measure_metric(cfg, 5, str(tmp_path), seed=0)
    assert result['train_dataset_len'] > 0 and 'train_dataset_error' not in result
    cfg.train_dataloader.dataset = dict(type='ConcatDataset', datasets=[cfg.train_dataloader.dataset.dataset])
    result = measure_metric(cfg, 5, str(tmp_path), seed=0)  # one it cannot build: said, the evaluation kept
    assert result['train_dataset_error'].startswith('TypeError') and result['compute_s'] > 0


# ------------------------------------------------------------------------------------------ --time-limit
def _spec(tmp_path: Path, coco_sample: Path, deadline: float) -> WorkerSpec:
    """A tiny CPU spec on the COCO sample (train and val), with ``deadline``."""
    ann, boxes = str(coco_sample / 'test_coco.json'), str(coco_sample / 'test_coco_det_AP_H_56.json')
    data = dict(root=str(coco_sample), train_ann_file=ann, val_ann_file=ann, train_img_dir=str(coco_sample),
                val_img_dir=str(coco_sample), bbox_file=boxes)
    return WorkerSpec(name='ours', config=resolve_config_path(OURS_CONFIG), data=data, batch_size=2, workers=0,
                      warmup=1, iters=2, device='cpu', work_dir=str(tmp_path),
                      result_file=str(tmp_path / 'result.json'), pipeline_samples=4, metric_images=20,
                      cfg_options={'model.backbone.depth': 18, 'model.head.in_channels': 512}, deadline=deadline)


def test_a_worker_past_its_deadline_starts_no_measurement(tmp_path: Path, coco_sample: Path) -> None:
    import json
    import time
    from ipr_plugin.benchmark.spec import MEASUREMENTS
    from ipr_plugin.benchmark.worker import run_worker
    spec = _spec(tmp_path, coco_sample, deadline=time.time())
    spec.skip = ['host']
    result = run_worker(spec)
    assert sorted(result['cut_off']) == sorted(m for m in MEASUREMENTS if m != 'host')
    assert not set(MEASUREMENTS) & set(result) and result['errors'] == {}
    assert json.loads(Path(spec.result_file).read_text())['cut_off'] == result['cut_off']  # on disk too


def test_the_command_stops_a_worker_at_the_deadline_and_keeps_nothing_running(tmp_path: Path,
                                                                              coco_sample: Path) -> None:
    """A worker needs longer than 3 s just to import the stack and build its first Runner: it is stopped at
    the deadline with its process group, and every measurement it did not finish is reported cut off."""
    import time
    from ipr_plugin.benchmark.cli import run_config
    from ipr_plugin.benchmark.spec import MEASUREMENTS
    start = time.time()
    result = run_config(_spec(tmp_path, coco_sample, deadline=start + 3))
    assert time.time() - start < 30  # stopped, not run to the end (the tiny run takes minutes here)
    assert result['cut_off'] and result['errors'] == {}
    assert all((m in result) != (m in result['cut_off']) for m in MEASUREMENTS)  # each either measured or cut
    assert processes_mentioning(str(tmp_path / 'spec.json')) == []
    # after the deadline no worker starts at all
    late = run_config(_spec(tmp_path / 'late', coco_sample, deadline=time.time() - 1))
    assert late['cut_off'] == list(MEASUREMENTS) and not (tmp_path / 'late').exists()


def test_a_worker_that_dies_keeps_what_it_measured_and_the_rest_is_an_error(tmp_path: Path,
                                                                            coco_sample: Path) -> None:
    """Killed from outside once its first result is on disk (as a segfault would end it): the finished
    measurements keep their numbers, each unfinished one is an error naming the exit status."""
    import os
    import signal
    import threading
    import time
    from ipr_plugin.benchmark.cli import run_config
    from ipr_plugin.benchmark.spec import MEASUREMENTS
    spec = _spec(tmp_path, coco_sample, deadline=None)
    box = {}
    runner = threading.Thread(target=lambda: box.update(result=run_config(spec)))
    runner.start()
    give_up = time.monotonic() + 300
    while not Path(spec.result_file).exists() and runner.is_alive() and time.monotonic() < give_up:
        time.sleep(0.05)
    for pid in processes_mentioning(str(tmp_path / 'spec.json')):
        os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)
    result = box['result']
    measured = [m for m in MEASUREMENTS if m in result]
    failed = [m for m in MEASUREMENTS if m in result['errors']]
    assert measured and failed and sorted(measured + failed) == sorted(MEASUREMENTS), result
    assert all('exit status -9' in result['errors'][m] for m in failed)
    assert 'cut_off' not in result


def test_a_benchmark_killed_outright_leaves_no_worker_running(tmp_path: Path, coco_sample: Path) -> None:
    """SIGKILL (a scheduler's hard limit, the out-of-memory killer) gives the benchmark no chance to stop its
    worker, which ran in its own session: left training, it skewed the next run's timings."""
    import os
    import signal
    import time
    (tmp_path / 'work').mkdir()
    spec_file = tmp_path / 'request.json'
    _spec(tmp_path / 'work', coco_sample, deadline=None).dump(str(spec_file))
    script = ('import sys\n'
              'from ipr_plugin.benchmark.cli import run_config\n'
              'from ipr_plugin.benchmark.spec import WorkerSpec\n'
              'run_config(WorkerSpec.load(sys.argv[1]))\n')
    parent = subprocess.Popen([sys.executable, '-c', script, str(spec_file)], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: List[int] = []
    try:
        give_up = time.monotonic() + 120
        while not workers and parent.poll() is None and time.monotonic() < give_up:
            time.sleep(0.1)
            workers = processes_mentioning(str(tmp_path / 'work' / 'spec.json'))
        assert workers, 'no worker started'
        parent.kill()
        parent.wait(30)
        deadline = time.monotonic() + 30
        while processes_mentioning(str(tmp_path / 'work' / 'spec.json')) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_mentioning(str(tmp_path / 'work' / 'spec.json')) == [], 'the worker outlived the benchmark'
    finally:
        parent.kill()
        for pid in processes_mentioning(str(tmp_path / 'work' / 'spec.json')):
            os.kill(pid, signal.SIGKILL)


def test_cut_off_cells_say_so_and_the_section_names_them() -> None:
    from ipr_plugin.benchmark.report import render_section
    results = [dict(name='a', config='a.py', errors={}, train=dict(per_s=100.0, elapsed_s=1.0), cut_off=['eval']),
               dict(name='b', config='b.py', errors={}, cut_off=['train', 'eval'])]
    section = render_section(results, 'cmd', [])
    rows = _table_rows(section, 'metric')
    assert rows['(a) train img/s'][:2] == ['100', 'cut off']
    assert rows['(c) eval img/s (flip)'][:2] == ['cut off', 'cut off']
    assert rows['(b) loader samples/s'][:2] == ['skipped', 'skipped']
    assert '- Cut off by the time limit, not measured: a: eval; b: train, eval' in section


def test_a_failed_measurement_is_listed_and_the_other_numbers_are_still_written(tmp_path, monkeypatch):
    """One measurement failing (an out-of-memory error in evaluation) must not cost the file the others went to:
    on a time-limited GPU machine that file is all that comes back."""
    from ipr_plugin.benchmark import cli

    def one_eval_fails(spec):  # what the worker reports: measured numbers, and an error by measurement
        result = dict(name=spec.name, config=spec.config, device='cpu', errors={},
                      train=dict(per_s=500.0, elapsed_s=7.0, data_wait_pct=10.0),
                      loader=dict(per_s=900.0, elapsed_s=4.0))
        if spec.name == 'ours':
            result['errors']['eval'] = 'OutOfMemoryError: CUDA out of memory'
        return result

    monkeypatch.setattr(cli, 'run_config', one_eval_fails)
    monkeypatch.setattr(cli, 'prepare_data', lambda root, *args: dict(
        num_train_images=10, num_train_instances=30, num_val_images=5, num_detections=15))
    out = tmp_path / 'B.md'
    rc = cli.main(['--device', 'cpu', '--configs', f'mmpose={ANCHOR_CONFIG}',
                   f'ours={OURS_CONFIG}', '--skip', 'pipeline', 'test_pipeline', 'host', 'metric', '--out', str(out)])
    text = out.read_text()
    assert rc == 1
    assert '- ours eval: OutOfMemoryError: CUDA out of memory' in text
    assert _table_rows(text, 'metric')['(a) train img/s'] == ['500', '500', '1.00']


def test_the_time_limit_is_shared_equally_by_the_configs_still_to_run() -> None:
    """The first config must not use the whole limit: the table compares configs, so it needs each of them."""
    from ipr_plugin.benchmark.cli import config_deadline
    assert config_deadline(None, 2, now=1000.0) is None
    assert config_deadline(1300.0, 2, now=1000.0) == 1150.0  # the first of two: half of the 300 s left
    assert config_deadline(1300.0, 1, now=1000.0) == 1300.0  # the last: all that is left, savings included
    assert config_deadline(900.0, 2, now=1000.0) == 1000.0  # already past: no time left to share


def test_each_config_gets_its_share_of_the_time_limit(monkeypatch, tmp_path) -> None:
    import time
    from ipr_plugin.benchmark import cli
    shares = []

    def record(spec):
        shares.append(spec.deadline - time.time())
        return dict(name=spec.name, config=spec.config, device='cpu', errors={})

    monkeypatch.setattr(cli, 'run_config', record)
    monkeypatch.setattr(cli, 'prepare_data', lambda root, *args: dict(
        num_train_images=10, num_train_instances=30, num_val_images=5, num_detections=15))
    cli.main(['--device', 'cpu', '--time-limit', '600', '--configs', f'mmpose={ANCHOR_CONFIG}',
              f'ours={OURS_CONFIG}', '--skip', 'pipeline', 'test_pipeline', 'host', 'metric',
              '--out', str(tmp_path / 'B.md')])  # not the repository's BENCHMARKS.md
    assert (tmp_path / 'B.md').is_file()
    assert 290 < shares[0] <= 300 and 590 < shares[1] <= 600  # the first returned at once: the second gets it all

"""tools/plot_training.py: the curves of real runs of the sample config (epoch- and iteration-based, resumed),
and what it does with logs it cannot read."""
import copy
import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

import pytest
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.apis.training_curves import LOG_NAME, draw_curves, plot_curves, read_curves, run_labels, summarize
from utils import sample_runner_cfg

_RUNS = itertools.count()


def _train(coco_sample, work_dir, train_cfg, resume=False, validate_alone=False, logger_interval=1):
    cfg = sample_runner_cfg(coco_sample, work_dir, train_cfg, logger_interval=logger_interval)
    cfg.param_scheduler = []
    cfg.resume = resume
    cfg.train_dataloader.dataset.indices = 4  # 2 iterations per epoch
    cfg.val_dataloader.dataset.indices = 4
    # mmengine keeps one visualizer per name in a process: another run's would write into the first run's folder
    cfg.visualizer.name = f'visualizer_{next(_RUNS)}'
    runner = Runner.from_cfg(cfg)
    runner.val() if validate_alone else runner.train()


@pytest.fixture(scope='module')
def epoch_run(coco_sample, tmp_path_factory):
    """3 epochs of 2 iterations (4 images, batch 2), validated after each; stopped after 2 and resumed, and
    validated alone in the same work dir."""
    work_dir = tmp_path_factory.mktemp('epochs')
    _train(coco_sample, work_dir, dict(by_epoch=True, max_epochs=2, val_interval=1))
    _train(coco_sample, work_dir, dict(by_epoch=True, max_epochs=3, val_interval=1), resume=True)
    _train(coco_sample, work_dir, dict(by_epoch=True, max_epochs=3, val_interval=1), validate_alone=True)
    return work_dir


def test_a_resumed_epoch_based_run_reads_as_one(epoch_run, tmp_path):
    curves = read_curves(str(epoch_run))
    # the marker at the checkpoint the second start resumed from (its text log: "resumed epoch: 2, iter: 4")
    assert len(curves.logs) == 2 and curves.resumed_at == [4] and curves.resume_logged == [True] and curves.by_epoch
    assert [line['iter'] for line in curves.train] == [1, 2, 3, 4, 5, 6]
    assert [line['epoch'] for line in curves.train] == [1, 1, 2, 2, 3, 3]
    # each validation after its epoch's last iteration; the validation alone is not part of the curves
    assert [(line['epoch'], line['iter']) for line in curves.val] == [(1, 2), (2, 4), (3, 6)]
    assert len(curves.skipped) == 1 and 'no training lines (a validation run?)' in curves.skipped[0]
    lines = summarize(curves)
    assert lines[0] == ('2 logs, resumed (from iteration 4); 6 training lines (iterations 1-6, validated at '
                        'epochs 1-3), 3 validations')
    assert [line.split(':')[0] for line in lines[1:3]] == ['loss', 'loss_kpt']
    best = max(line['coco/AP'] for line in curves.val)
    assert any(line.startswith(f"coco/AP: highest {best:.4g} at epoch ") for line in lines)

    out = tmp_path / 'curves.png'
    plot_curves(curves, str(out))
    import matplotlib.pyplot as plt
    assert plt.imread(str(out)).shape[:2] == (800, 1200)
    with pytest.raises(ValueError, match=r"metrics \['coco/AP50'\] were not logged by validation; it logged "
                                         r"\['coco/AP', 'coco/AP .5'"):
        plot_curves(curves, str(tmp_path / 'other.png'), ['coco/AP50'])


def test_an_iteration_based_run_places_each_validation_at_its_iteration(coco_sample, tmp_path):
    # mmengine logs these validations at step 0 (log_metric_by_epoch defaults to True); with a logging interval
    # of 3 (and at the end of each pass over the 4 samples) the validation after iteration 4 follows the line of 3
    _train(coco_sample, tmp_path / 'run', dict(by_epoch=False, max_iters=4, val_interval=2), logger_interval=3)
    curves = read_curves(str(tmp_path / 'run'))
    assert not curves.by_epoch and [line['iter'] for line in curves.train] == [2, 3]
    assert [line['iter'] for line in curves.val] == [2, 4]  # from the dumped config's val_interval
    assert summarize(curves)[-1].endswith(' at iteration 4')
    # without the config mmengine dumps beside the log: after the last training line logged before each
    (next((tmp_path / 'run').glob('*/vis_data')) / 'config.py').unlink()
    curves = read_curves(str(tmp_path / 'run'))
    assert [line['iter'] for line in curves.val] == [2, 3]
    assert summarize(curves)[-1].endswith(' after iteration 3')

    # a second run from scratch into the same work dir is a run of its own
    _train(coco_sample, tmp_path / 'run', dict(by_epoch=False, max_iters=2, val_interval=2))
    curves = read_curves(str(tmp_path / 'run'))
    assert len(curves.logs) == 1 and [line['iter'] for line in curves.train] == [1, 2] and not curves.resumed_at
    assert 'an earlier run (' in curves.skipped[0]
    assert 'starts a new one at iteration 1: its config says resume = False)' in curves.skipped[0]


def test_a_log_cut_mid_line_or_turned_nan_is_read_and_named(epoch_run, tmp_path):
    first = sorted(epoch_run.glob(f'*/{LOG_NAME}'))[0]
    log = tmp_path / 'run' / LOG_NAME
    log.parent.mkdir(parents=True)
    lines = first.read_text().splitlines()
    third = next(i for i, line in enumerate(lines) if '"iter": 3,' in line)
    lines[third] = lines[third].replace('"loss": ', '"loss": NaN, "was": ')  # json.dumps writes a NaN loss so
    log.write_text('\n'.join(lines) + '\n{"lr": 0.001, "loss": 0.5')  # a run killed while writing its last line
    curves = read_curves(str(tmp_path / 'run'))
    assert len(curves.train) == 4 and math.isnan(curves.train[2]['loss'])
    assert curves.skipped == [f'{log}:{len(lines) + 1}: not a JSON object of numbers (the run stopped while '
                              'writing it?)']
    text = '\n'.join(summarize(curves))
    assert f"; non-finite from iteration {curves.train[2]['iter']}" in text and 'not read: 1 (' in text
    plot_curves(curves, str(tmp_path / 'nan.png'))
    # a line of another kind is named; a file that is no such log at all is refused by name
    log.write_text('\n'.join(lines[:2] + ['{"loss": "abc", "iter": 9}', '{"loss": 1.0, "iter": "9"}']))
    curves = read_curves(str(log))
    assert [s.split(': ')[-1] for s in curves.skipped] == [
        'not a JSON object of numbers', 'not a JSON object of numbers (the run stopped while writing it?)']
    text_log = next(first.parent.parent.glob('*.log'))
    with pytest.raises(ValueError, match=f'{text_log} is not a log of mmengine: none of its .* lines is a JSON'):
        read_curves(str(text_log))


def _legend(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()] if ax.get_legend() else []


def test_several_runs_share_the_panels(epoch_run, coco_sample, tmp_path):
    _train(coco_sample, tmp_path / 'iters', dict(by_epoch=False, max_iters=4, val_interval=2))
    runs = [read_curves(str(epoch_run)), read_curves(str(tmp_path / 'iters'))]
    assert run_labels(runs) == [epoch_run.name, 'iters']
    fig = draw_curves(runs, labels=['A', 'B'])
    loss, _, _, val = fig.axes
    assert _legend(loss)[:4] == ['A: loss', 'A: loss_kpt', 'resumed', 'B: loss']
    assert {line.get_color() for line in loss.get_lines() if line.get_label() == 'A: loss'} == {'C0'}
    assert {line.get_color() for line in loss.get_lines() if line.get_label() == 'B: loss'} == {'C1'}
    ap = {line.get_label(): list(line.get_xdata()) for line in val.get_lines()}
    assert ap['A: coco/AP'] == [2, 4, 6] and ap['B: coco/AP'] == [2, 4]
    with pytest.raises(ValueError, match='1 labels for 2 runs'):
        draw_curves(runs, labels=['A'])
    with pytest.raises(ValueError, match="labels \\['A', 'A'\\] name two runs alike"):
        draw_curves(runs, labels=['A', 'A'])
    # a key keeps its line style where one run logs a term the other does not; the resumed run's starts are
    # named where it is not the first run
    other = copy.deepcopy(runs[1])
    other.train = [{'loss_hm': 0.1, **line} for line in other.train]
    loss = draw_curves([other, runs[0]], labels=['B', 'A']).axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in loss.get_lines()}
    assert styles['A: loss_kpt'] == styles['B: loss_kpt'] != styles['B: loss_hm']
    assert 'resumed' in _legend(loss)
    # two runs of one work dir (its <timestamp> folders) are named by their paths
    starts = [str(log.parent.parent) for log in sorted(epoch_run.glob(f'*/{LOG_NAME}'))][:2]  # then val() alone
    assert run_labels([read_curves(start) for start in starts]) == starts
    assert run_labels([runs[1], runs[1]]) == [f'{runs[1].source} (1)', f'{runs[1].source} (2)']


def test_paths_without_logs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing does not exist'):
        read_curves(str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match=r'holds no training log: mmengine writes one per start of a run '
                                                r'to <work_dir>/<timestamp>/vis_data/scalars.json'):
        read_curves(str(tmp_path))


def test_the_command_line(epoch_run, repo_root, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(epoch_run, work_dir)
    tool = [sys.executable, str(repo_root / 'tools' / 'plot_training.py')]
    done = subprocess.run([*tool, str(work_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f'picture: {work_dir}/training_curves.png' in done.stdout and (work_dir / 'training_curves.png').is_file()
    assert 'coco/AP: highest ' in done.stdout
    done = subprocess.run([*tool, str(work_dir), str(epoch_run), '--labels', 'copy', 'first', '--out',
                           str(tmp_path / 'both.svg')], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f'copy ({work_dir}):\n  2 logs')
    assert f'\nfirst ({epoch_run}):\n  2 logs' in done.stdout
    assert (tmp_path / 'both.svg').read_text().count('first: coco/AP') == 1
    for args, message in (([str(tmp_path / 'nowhere')], 'plot_training: ' + str(tmp_path / 'nowhere') +
                           ' does not exist'),
                          ([str(work_dir), '--out', str(tmp_path / 'x.txt')], 'is not a .png, .svg, .pdf file'),
                          ([str(work_dir), '--metrics', 'AP'], "metrics ['AP'] were not logged by validation"),
                          ([str(work_dir), str(work_dir)], 'argument --out: needed to compare several paths'),
                          ([str(work_dir), '--labels', 'a', 'b'], 'argument --labels: 2 names for 1 paths'),
                          ([str(work_dir), str(work_dir), '--labels', 'a', 'a', '--out', str(tmp_path / 'x.png')],
                           "argument --labels: ['a', 'a'] name two runs alike")):
        done = subprocess.run([*tool, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and message in done.stderr, done.stderr


# Work dirs written by hand, as mmengine lays them out, for what the runs above do not cover (fast: no training)

def _config(resume: bool = False, by_epoch: bool = True, interval: int = 1, max_iters: int = 8,
            backends: Sequence[str] = ('LocalVisBackend',)) -> str:
    """A config as mmengine dumps it, with what the reader looks at."""
    train = 'dict(by_epoch=True, max_epochs=4, val_interval=1)' if by_epoch else \
        f'dict(by_epoch=False, max_iters={max_iters}, val_interval={max_iters})'
    vis = ', '.join(f'dict(type={backend!r})' for backend in backends)
    return (f'resume = {resume}\nload_from = None\ntrain_cfg = {train}\n'
            f"default_hooks = dict(logger=dict(type='LoggerHook', interval={interval}))\n"
            f"visualizer = dict(type='PoseLocalVisualizer', vis_backends=[{vis}])\n")


def _train_line(it: int, epoch: Optional[int] = 0, loss: float = 0.5, prefix: str = '') -> str:
    line = {f'{prefix}lr': 0.001, f'{prefix}loss': loss, f'{prefix}loss_kpt': loss, f'{prefix}acc_pose': 0.1,
            f'{prefix}time': 0.2, f'{prefix}data_time': 0.01, 'iter': it, 'step': it}
    return json.dumps(dict(line, epoch=epoch) if epoch else line)


def _val_line(step: int, ap: float = 0.1, prefix: str = '') -> str:
    return json.dumps({f'{prefix}coco/AP': ap, f'{prefix}coco/AR': ap + 0.1, f'{prefix}time': 0.05, 'step': step})


def _start(work_dir: Path, name: str, lines: Sequence[str] = (), config: Optional[str] = None,
           text: Sequence[str] = ()) -> Path:
    """A start's ``<timestamp>`` folder: its text log (``text``, mmengine's INFO lines), and with ``config``
    (a LocalVisBackend's) its ``vis_data/config.py`` and ``scalars.json``."""
    folder = work_dir / name
    folder.mkdir(parents=True)
    (folder / f'{name}.log').write_text(''.join(f'2026/12/07 20:18:43 - mmengine - INFO - {t}\n' for t in text))
    if config is not None:
        (folder / 'vis_data').mkdir()
        (folder / 'vis_data' / 'config.py').write_text(config)
        (folder / LOG_NAME).write_text(''.join(f'{line}\n' for line in lines))
    return folder


def test_a_new_run_with_a_longer_logger_interval_is_not_read_as_resumed(tmp_path):
    first = _start(tmp_path, '20260101_000000', [_train_line(1, 1), _train_line(2, 1), _val_line(1)], _config())
    # from scratch again (resume = False), logging every 2nd iteration: its first line is after the first run's
    _start(tmp_path, '20260101_000100', [_train_line(2, 1, 0.4), _val_line(1, 0.2), _train_line(4, 2, 0.3)],
           _config(interval=2))
    curves = read_curves(str(tmp_path))
    assert len(curves.logs) == 1 and not curves.resumed_at
    assert [line['iter'] for line in curves.train] == [2, 4] and [line['coco/AP'] for line in curves.val] == [0.2]
    assert curves.skipped == [f'{first / LOG_NAME}: an earlier run ({tmp_path}/20260101_000100/{LOG_NAME} starts a '
                              'new one at iteration 2: its config says resume = False)']
    text = summarize(curves)
    assert text[0].startswith('1 log; 2 training lines') and text[-1].startswith('not read: 1 (')


def test_a_log_with_hierarchy_is_read_without_its_modes(tmp_path):
    # LogProcessor(log_with_hierarchy=True): train/loss, val/coco/AP, train/time ...
    lines = [_train_line(1, 1, prefix='train/'), _train_line(2, 1, math.nan, prefix='train/'),
             _val_line(1, prefix='val/')]
    _start(tmp_path, '20260101_000000', lines, _config())
    curves = read_curves(str(tmp_path))
    assert set(curves.train[0]) == {'lr', 'loss', 'loss_kpt', 'acc_pose', 'time', 'data_time', 'epoch', 'iter', 'step'}
    assert curves.first_non_finite() == {'loss': 2, 'loss_kpt': 2}
    assert [(line['epoch'], line['coco/AP']) for line in curves.val] == [(1, 0.1)]
    text = summarize(curves)
    assert 'loss: first 0.5, last nan, lowest 0.5; non-finite from iteration 2' in text
    assert text[-1] == 'coco/AP: highest 0.1 at epoch 1, last 0.1 at epoch 1'
    fig = draw_curves(curves)
    assert all(not ax.texts for ax in fig.axes)  # no panel says "not logged"
    assert _legend(fig.axes[0]) == ['loss', 'loss_kpt', 'first non-finite loss (2)']
    assert _legend(fig.axes[3]) == ['coco/AP', 'coco/AR']


def test_a_run_without_a_local_vis_backend_is_named_so(tmp_path):
    for name, backends, said in (('tb', ['TensorboardVisBackend'], '[TensorboardVisBackend]'), ('none', [], '[]')):
        work_dir = tmp_path / name
        _start(work_dir, '20260101_000000', text=['Config:'])  # no vis_data/config.py: no LocalVisBackend
        (work_dir / 'ipr_res18_coco-sample-64x64.py').write_text(_config(backends=backends))
        with pytest.raises(FileNotFoundError) as error:
            read_curves(str(work_dir))
        assert str(error.value).endswith(
            "; its 1 run folder(s) have none: logged without mmengine's LocalVisBackend (visualizer.vis_backends = "
            f"{said} in {work_dir}/ipr_res18_coco-sample-64x64.py): add dict(type='LocalVisBackend') to "
            "visualizer.vis_backends to plot its curves (TensorBoard's, W&B's or MLflow's logs are not read)")
    # a test run (a LocalVisBackend, but nothing logged to it) is still told apart
    (tmp_path / 'test' / '20260101_000000' / 'vis_data').mkdir(parents=True)
    (tmp_path / 'test' / '20260101_000000' / '20260101_000000.log').write_text('')
    (tmp_path / 'test' / '20260101_000000' / 'vis_data' / 'config.py').write_text(_config())
    with pytest.raises(FileNotFoundError, match=r'have none: no training log \(a test run, or a run stopped'):
        read_curves(str(tmp_path / 'test'))


def test_a_resumed_start_without_a_local_vis_backend_is_named(tmp_path):
    _start(tmp_path, '20260101_000000', [_train_line(it, (it + 1) // 2) for it in (1, 2, 3, 4)], _config())
    later = _start(tmp_path, '20260101_000100', text=['Load checkpoint from epoch_2.pth', 'resumed epoch: 2, iter: 4'])
    (tmp_path / 'ipr_res18_coco-sample-64x64.py').write_text(_config(True, backends=['WandbVisBackend']))
    curves = read_curves(str(tmp_path))
    assert len(curves.logs) == 1 and len(curves.train) == 4
    assert curves.skipped == [
        f"{later} (a start resumed from iteration 4): logged without mmengine's LocalVisBackend (visualizer."
        f"vis_backends = [WandbVisBackend] in {tmp_path}/ipr_res18_coco-sample-64x64.py): add dict(type="
        "'LocalVisBackend') to visualizer.vis_backends to plot its curves (TensorBoard's, W&B's or MLflow's logs "
        "are not read)"]
    assert summarize(curves)[-1] == f'not read: 1 ({curves.skipped[0]})'


def test_a_logger_interval_longer_than_the_run_is_named(tmp_path):
    # an iteration-based run of 3 iterations logging every 10th: only its validation (at step 0) is logged
    log = _start(tmp_path, '20260101_000000', [_val_line(0)], _config(by_epoch=False, interval=10, max_iters=3),
                 text=['Checkpoints will be saved to /work_dir.']) / LOG_NAME
    with pytest.raises(ValueError) as error:
        read_curves(str(tmp_path))
    assert str(error.value) == (f'nothing to plot: {log}: no training lines: its logger logs every 10 iterations '
                                '(default_hooks.logger.interval) and it trained iterations 1-3 (train_cfg.max_iters)')
    # a validation run of the same config (Runner.val(): no training begun) is what it was
    (log.parent.parent / f'{log.parent.parent.name}.log').write_text('')
    with pytest.raises(ValueError, match=r'scalars.json: no training lines \(a validation run\?\)$'):
        read_curves(str(tmp_path))


def test_a_resume_is_drawn_from_the_checkpoint_it_resumed_from(tmp_path):
    # the first start, checkpointed at epoch 2 (iteration 4), was killed in epoch 4 after iteration 7
    killed = [_train_line(1, 1), _train_line(2, 1), _val_line(1), _train_line(3, 2), _train_line(4, 2), _val_line(2),
              _train_line(5, 3), _train_line(6, 3), _val_line(3), _train_line(7, 4)]
    _start(tmp_path, '20260101_000000', killed, _config())
    # resumed from epoch_2.pth, logging every 2nd iteration: epochs 3 and 4 again
    resumed = [_train_line(6, 3, 0.4), _val_line(3, 0.3), _train_line(8, 4, 0.3), _val_line(4, 0.4)]
    later = _start(tmp_path, '20260101_000100', resumed, _config(True, interval=2),
                   text=['Load checkpoint from epoch_2.pth', 'resumed epoch: 2, iter: 4'])
    curves = read_curves(str(tmp_path))
    assert [line['iter'] for line in curves.train] == [1, 2, 3, 4, 6, 8]
    assert [(line['epoch'], line['coco/AP']) for line in curves.val] == [(1, 0.1), (2, 0.1), (3, 0.3), (4, 0.4)]
    assert curves.resumed_at == [4] and curves.resume_logged == [True]
    assert summarize(curves)[0].startswith('2 logs, resumed (from iteration 4); 6 training lines (iterations 1-8')
    loss = draw_curves(curves).axes[0]
    assert [list(line.get_xdata()) for line in loss.get_lines() if line.get_label() == 'resumed'] == [[4, 4]]
    # without the text log that says where it resumed: at its first line, as before (and said so)
    (later / f'{later.name}.log').unlink()
    curves = read_curves(str(tmp_path))
    assert [line['iter'] for line in curves.train] == [1, 2, 3, 4, 5, 6, 8]
    assert curves.resumed_at == [6] and curves.resume_logged == [False]
    assert summarize(curves)[0].startswith('2 logs, resumed (first lines at iteration 6); ')

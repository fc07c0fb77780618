"""tools/plot_training.py: the curves of real runs of the sample config (epoch- and iteration-based, resumed),
and what it does with logs it cannot read."""
import copy
import itertools
import math
import shutil
import subprocess
import sys

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
    assert len(curves.logs) == 2 and curves.resumed_at == [5] and curves.by_epoch
    assert [line['iter'] for line in curves.train] == [1, 2, 3, 4, 5, 6]
    assert [line['epoch'] for line in curves.train] == [1, 1, 2, 2, 3, 3]
    # each validation after its epoch's last iteration; the validation alone is not part of the curves
    assert [(line['epoch'], line['iter']) for line in curves.val] == [(1, 2), (2, 4), (3, 6)]
    assert len(curves.skipped) == 1 and 'no training lines (a validation run?)' in curves.skipped[0]
    lines = summarize(curves)
    assert lines[0] == ('2 logs, resumed (first lines at iteration 5); 6 training lines (iterations 1-6, validated at '
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
    assert 'an earlier run (' in curves.skipped[0] and 'starts again at iteration 1)' in curves.skipped[0]


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

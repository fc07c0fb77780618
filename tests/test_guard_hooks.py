"""FiniteLossHook stops a diverging run at its first NaN loss and refuses to save NaN weights; CheckpointFitHook
refuses a misfit checkpoint in a test run, but not in training."""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from utils import OURS_SAMPLE_CONFIG as CONFIG
from utils import run_mim, sample_runner_cfg


def _cfg(coco_sample, work_dir, **train_cfg) -> Config:
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, val_interval=1000, **train_cfg),
                            logger_interval=4, val_samples=4)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=3)
    return cfg


def _diverge(coco_sample, work_dir, interval):
    cfg = _cfg(coco_sample, work_dir, max_iters=12)
    cfg.optim_wrapper.optimizer.lr = 1e30  # Adam moves every weight by about lr: the activations overflow
    cfg.default_hooks.finite_loss = dict(type='FiniteLossHook', interval=interval)
    with pytest.raises(FloatingPointError) as info:
        Runner.from_cfg(cfg).train()
    message = str(info.value)
    iteration = int(re.search(r'at iteration (\d+) ', message).group(1))
    saved = sorted(int(p.stem.split('_')[1]) for p in work_dir.glob('iter_*.pth'))
    return iteration, message, saved


def test_a_diverging_run_stops_at_its_first_non_finite_loss_before_saving_it(coco_sample, tmp_path):
    # interval 1 checks every iteration: the reference for where the loss first turned non-finite
    first, _, _ = _diverge(coco_sample, tmp_path / 'every', interval=1)
    # the default checks with the logger (every 4 iterations) and before each checkpoint (every 3)
    iteration, message, saved = _diverge(coco_sample, tmp_path / 'deferred', interval=None)
    assert 1 <= first < 12
    assert iteration == first  # the first bad iteration is named, not the one where the check ran
    assert re.search(r'loss_kpt=(nan|inf|-inf)', message) and 'learning rate' in message
    assert all(it < first for it in saved)  # nothing saved from NaN weights
    # the run's log file says why it stopped (mmengine logs no exception that ends a run)
    log = next((tmp_path / 'deferred').glob('*/*.log')).read_text()
    assert re.search(r' - ERROR - \S*finite_loss_hook.py - flush - \d+ - FloatingPointError: ' + re.escape(message),
                     log)
    # and what was saved before is finite: the step before the first NaN loss wrote huge, not NaN, weights here
    for it in saved:
        weights = torch.load(tmp_path / 'deferred' / f'iter_{it}.pth', map_location='cpu', weights_only=False)
        assert all(torch.isfinite(v).all() for v in weights['state_dict'].values() if v.is_floating_point())


class _NaNGradientStep(Hook):
    """Writes NaN into one weight after the optimizer step of ``iteration``: what a non-finite gradient does,
    while that iteration's own loss was still finite."""

    priority = 'LOW'  # after FiniteLossHook's and the logger's after_train_iter, before CheckpointHook's

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            with torch.no_grad():
                runner.model.backbone.conv1.weight[0, 0, 0, 0] = float('nan')


def test_non_finite_weights_are_not_saved_even_while_the_loss_is_finite(coco_sample, tmp_path):
    cfg = _cfg(coco_sample, tmp_path, max_iters=6)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=1)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_NaNGradientStep(3))
    with pytest.raises(FloatingPointError, match=r'weights to be saved after iteration 3 are not finite '
                       r'\(backbone\.conv1\.weight\)'):
        runner.train()
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_1.pth', 'iter_2.pth']


def test_non_finite_weights_are_not_validated_within_training(coco_sample, tmp_path):
    """Validation before the next checkpoint (a whole epoch of it on COCO) would run on the broken weights, and the
    error come after it: the weights are checked before it, buffers (batch-norm statistics) too."""
    cfg = _cfg(coco_sample, tmp_path, max_iters=6)
    cfg.train_cfg.val_interval = 3
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=100)
    runner = Runner.from_cfg(cfg)

    class _NaNStatistics(_NaNGradientStep):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            if runner.iter + 1 == self.iteration:
                runner.model.backbone.bn1.running_var[0] = float('nan')

    runner.register_hook(_NaNStatistics(3))
    validated = []
    runner.register_hook(type('Seen', (Hook, ), dict(after_val_iter=lambda self, *a, **k: validated.append(1)))())
    with pytest.raises(FloatingPointError, match=r'weights after iteration 3 are not finite \(backbone\.bn1\.'
                       r'running_var\) .* batch-norm statistics .* Nothing is validated or saved\.'):
        runner.train()
    assert validated == []


def _checkpoint(coco_sample, work_dir) -> Path:
    """The checkpoint of one training iteration of the sample config."""
    Runner.from_cfg(_cfg(coco_sample, work_dir, max_iters=1)).train()
    checkpoint = work_dir / 'iter_1.pth'
    assert checkpoint.is_file()
    return checkpoint


def test_a_test_run_refuses_a_checkpoint_of_another_model_and_takes_its_own(coco_sample, tmp_path):
    own = _checkpoint(coco_sample, tmp_path / 'train')
    state = torch.load(own, map_location='cpu', weights_only=False)
    state['state_dict'] = {k.replace('head.', 'other_head.'): v for k, v in state['state_dict'].items()}
    misfit = tmp_path / 'misfit.pth'
    torch.save(state, misfit)

    cfg = _cfg(coco_sample, tmp_path / 'test', max_iters=1)
    cfg.load_from = str(own)
    metrics = Runner.from_cfg(cfg).test()
    assert 'coco/AP' in metrics
    # a hook that builds the train loop in a test run (EarlyStoppingHook reads runner.train_loop) changes nothing
    cfg = _cfg(coco_sample, tmp_path / 'test_early', max_iters=1)
    cfg.load_from = str(misfit)
    cfg.custom_hooks = [dict(type='EarlyStoppingHook', monitor='coco/AP', rule='greater')]
    with pytest.raises(ValueError, match='lacks') as refused:
        Runner.from_cfg(cfg).test()
    assert f' - ValueError: {refused.value}' in next((tmp_path / 'test_early').glob('*/*.log')).read_text()
    # a diverged run's weights: named, not a NaN error from the first image (or an AP of 0)
    state = torch.load(own, map_location='cpu', weights_only=False)
    state['state_dict']['backbone.conv1.weight'][0, 0, 0, 0] = float('nan')
    diverged = tmp_path / 'diverged.pth'
    torch.save(state, diverged)
    cfg = _cfg(coco_sample, tmp_path / 'test_nan', max_iters=1)
    cfg.load_from = str(diverged)
    with pytest.raises(ValueError, match=r'diverged.pth holds NaN or Inf in 1 tensor\(s\) \(backbone.conv1.weight\)'):
        Runner.from_cfg(cfg).test()

    # mmengine alone would warn and report an AP from a random head; the user's command names the file instead
    options = [f'train_dataloader.dataset.data_root={coco_sample}/',
               f'test_dataloader.dataset.data_root={coco_sample}/',
               f'test_dataloader.dataset.bbox_file={coco_sample}/test_coco_det_AP_H_56.json',
               f'test_evaluator.ann_file={coco_sample}/test_coco.json']
    result = run_mim(['test', 'mmpose', CONFIG, '--checkpoint', misfit, '--work-dir', tmp_path / 'mim',
                      '--cfg-options', *options], check=False, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if line.startswith('ValueError')]
    assert errors and str(misfit) in errors[-1] and 'lacks' in errors[-1] and 'head.' in errors[-1]
    assert 'Epoch(test)' not in result.stdout  # refused before inference


@pytest.mark.parametrize('content', [b'', b"_base_ = ['x.py']\n", b'\xff\xd8\xff\xe0 a JPEG'])
def test_a_load_from_that_is_no_checkpoint_is_named_before_mmengine_reads_it(coco_sample, tmp_path, content):
    not_a_checkpoint = tmp_path / 'weights.pth'
    not_a_checkpoint.write_bytes(content)
    for mode in ('test', 'train'):
        cfg = _cfg(coco_sample, tmp_path / mode, max_iters=1)
        cfg.load_from = str(not_a_checkpoint)
        problem = r'weights.pth is not a PyTorch checkpoint \((the file is empty|it starts)'
        with pytest.raises(ValueError, match=problem):
            getattr(Runner.from_cfg(cfg), mode)()


def test_training_still_fine_tunes_from_another_models_checkpoint(coco_sample, tmp_path):
    state = torch.load(_checkpoint(coco_sample, tmp_path / 'train'), map_location='cpu', weights_only=False)
    backbone_only = tmp_path / 'backbone_only.pth'
    torch.save({'state_dict': {k: v for k, v in state['state_dict'].items() if k.startswith('backbone.')}},
               backbone_only)
    cfg = _cfg(coco_sample, tmp_path / 'finetune', max_iters=2)
    cfg.load_from = str(backbone_only)
    cfg.optim_wrapper.optimizer.lr = 0.0  # the convolutions keep what was loaded
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    loaded = runner.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state['state_dict'].items() if k.startswith('backbone.conv1'))


def test_with_a_loss_scaler_an_isolated_non_finite_loss_is_a_skipped_step_and_a_lasting_one_an_error():
    from ipr_plugin.engine import FiniteLossHook
    hook = FiniteLossHook(max_skipped=3)
    hook._scaled = True  # what before_train finds for AmpOptimWrapper(dtype='float16'): a GradScaler, enabled
    last = 0

    def check(*losses):
        nonlocal last
        hook._pending = [(last + i + 1, 1, ['loss_kpt'], torch.tensor([v])) for i, v in enumerate(losses)]
        last += len(losses)
        hook.flush(None)

    nan, inf = float('nan'), float('inf')
    check(0.5, inf, 0.4)  # the scaler skipped one step and training goes on
    assert hook._pending == []
    # a check over a single iteration (end of an epoch, a checkpoint, logging every iteration) is no reason
    check(inf)
    check(0.3)
    # a run is counted across checks: iterations 7-9 are non-finite in a row
    check(0.2, inf)
    with pytest.raises(FloatingPointError, match=r'in 3 iterations in a row, up to 9, the first at iteration 7 '):
        check(nan, inf)
    hook._scaled = False
    with pytest.raises(FloatingPointError, match=r'not finite at iteration 11 \(epoch 1\): loss_kpt=inf'):
        check(0.5, inf, 0.4)
    with pytest.raises(ValueError, match='max_skipped must be >= 1'):
        FiniteLossHook(max_skipped=0)


def test_a_resumed_run_counts_the_skipped_steps_on_from_its_checkpoint(tmp_path):
    """The count of non-finite iterations in a row survives a resume (the scaler's halved scale does too), through
    a weights_only load; a run fine-tuning from the same checkpoint (load_from) starts counting afresh."""
    from types import SimpleNamespace

    from ipr_plugin.engine import FiniteLossHook

    def runner(iteration):  # what the hook reads of mmengine's Runner; the scaler is torch's own
        return SimpleNamespace(iter=iteration, epoch=0, max_iters=1000, hooks=[], train_dataloader=range(1000),
                               optim_wrapper=SimpleNamespace(loss_scaler=torch.amp.GradScaler('cpu')))

    def skipped_steps(hook, run, count):
        for _ in range(count):
            hook.after_train_iter(run, run.iter, outputs=dict(loss_kpt=torch.tensor(float('nan'))))
            run.iter += 1

    first, run = FiniteLossHook(max_skipped=4), runner(100)
    first.before_train(run)
    skipped_steps(first, run, 3)  # iterations 101-103: skipped, training goes on
    checkpoint = dict(meta=dict(iter=run.iter, epoch=0), state_dict=dict(weight=torch.ones(2)))
    first.before_save_checkpoint(run, checkpoint)
    torch.save(checkpoint, tmp_path / 'iter_103.pth')
    loaded = torch.load(tmp_path / 'iter_103.pth', weights_only=True)

    resumed, run = FiniteLossHook(max_skipped=4), runner(103)
    resumed.after_load_checkpoint(run, loaded)
    resumed.before_train(run)
    with pytest.raises(FloatingPointError, match=r'in 4 iterations in a row, up to 104, the first at iteration 101 '):
        skipped_steps(resumed, run, 1)

    tuned, run = FiniteLossHook(max_skipped=4), runner(0)
    tuned.after_load_checkpoint(run, loaded)
    tuned.before_train(run)
    skipped_steps(tuned, run, 3)

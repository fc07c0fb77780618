"""FiniteLossHook stops a diverging run at its first NaN loss; CheckpointFitHook refuses a misfit checkpoint in a
test run, but not in training."""
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from utils import OURS_SAMPLE_CONFIG as CONFIG
from utils import run_mim, sample_runner_cfg


def _cfg(coco_sample, work_dir, **train_cfg) -> Config:
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, val_interval=1000, **train_cfg),
                            logger_interval=4)
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


def _checkpoint(coco_sample, work_dir) -> Runner:
    cfg = _cfg(coco_sample, work_dir, max_iters=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_a_test_run_refuses_a_checkpoint_of_another_model_and_takes_its_own(coco_sample, tmp_path):
    runner = _checkpoint(coco_sample, tmp_path / 'train')
    own = tmp_path / 'train' / 'iter_1.pth'
    assert own.is_file()
    state = torch.load(own, map_location='cpu', weights_only=False)
    state['state_dict'] = {k.replace('head.', 'other_head.'): v for k, v in state['state_dict'].items()}
    misfit = tmp_path / 'misfit.pth'
    torch.save(state, misfit)

    cfg = _cfg(coco_sample, tmp_path / 'test', max_iters=1)
    cfg.load_from = str(own)
    metrics = Runner.from_cfg(cfg).test()
    assert 'coco/AP' in metrics
    del runner

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


def test_training_still_fine_tunes_from_another_models_checkpoint(coco_sample, tmp_path):
    _checkpoint(coco_sample, tmp_path / 'train')
    state = torch.load(tmp_path / 'train' / 'iter_1.pth', map_location='cpu', weights_only=False)
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

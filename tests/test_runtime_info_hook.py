"""IPRRuntimeInfoHook gives the message hub (and so the logs) exactly what mmengine's RuntimeInfoHook gives."""
import re

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.engine.runtime_info_hook import _to_host
from utils import sample_runner_cfg


def _train(coco_sample, work_dir, runtime_info):
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=True, max_epochs=3, val_interval=2),
                            logger_interval=2)
    cfg.val_dataloader.dataset.indices = 2  # validation runs, briefly
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, save_last=False)
    if runtime_info:
        cfg.default_hooks.runtime_info = runtime_info
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = {key: buf.data[0].copy() for key, buf in runner.message_hub.log_scalars.items()
           if key.startswith('train/') and key not in ('train/time', 'train/data_time')}
    # what the LoggerHook wrote at each of its intervals, without the timings
    log = next(work_dir.glob('*/*.log')).read_text().splitlines()
    logged = [re.sub(r'(eta|time|data_time|memory): \S+\s*', '', line.split(' - INFO - ')[-1])
              for line in log if 'Epoch(train)' in line]
    return hub, logged


def test_logs_and_message_hub_hold_the_same_values_in_the_same_order(coco_sample, tmp_path):
    ref, ref_logged = _train(coco_sample, tmp_path / 'default', None)
    # interval 3 with the logger's 2: it must still flush on every logging iteration
    out, out_logged = _train(coco_sample, tmp_path / 'deferred', dict(type='IPRRuntimeInfoHook', interval=3))
    assert len(ref_logged) >= 6 and all('loss_kpt: ' in line for line in ref_logged)
    assert out_logged == ref_logged
    assert {'train/loss', 'train/loss_kpt', 'train/acc_pose', 'train/lr'} <= set(ref)
    assert set(out) == set(ref)
    for key in ref:
        assert len(ref[key]) >= 6, key  # 3 epochs of >= 2 iterations, every iteration's value kept
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)


def test_values_come_back_as_item_gives_them():
    values = [torch.tensor(0.1), torch.tensor(3), 2.5, torch.tensor([7.0], dtype=torch.float64),
              torch.tensor(0.3, dtype=torch.bfloat16)]
    expected = [v.item() if isinstance(v, torch.Tensor) else v for v in values]
    out = _to_host(values)
    assert out == expected and [type(v) for v in out] == [type(v) for v in expected]
    with pytest.raises(ValueError, match='one element'):
        _to_host([torch.zeros(2)])


def _checkpoint_hub(coco_sample, work_dir, runtime_info):
    """train/* histories in the message hub of a checkpoint saved between two logging iterations."""
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, max_iters=4, val_interval=1000),
                            logger_interval=4)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=3, save_last=False)
    if runtime_info:
        cfg.default_hooks.runtime_info = runtime_info
    Runner.from_cfg(cfg).train()
    hub = torch.load(work_dir / 'iter_3.pth', map_location='cpu', weights_only=True)['message_hub']
    return {key: buf.data[0] for key, buf in hub['log_scalars'].items()
            if key.startswith('train/') and key not in ('train/time', 'train/data_time')}


def test_a_checkpoint_between_logging_iterations_saves_every_value(coco_sample, tmp_path):
    """The Runner copies the message hub before ``before_save_checkpoint``: the copy must hold the values the
    hook had not yet handed over, or a run resumed from it would smooth its losses differently."""
    ref = _checkpoint_hub(coco_sample, tmp_path / 'default', None)
    out = _checkpoint_hub(coco_sample, tmp_path / 'deferred', dict(type='IPRRuntimeInfoHook'))
    assert len(ref['train/loss']) == 3 and set(out) == set(ref)
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)

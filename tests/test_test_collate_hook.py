"""IPRTestCollateHook: a test run (``mim test``) collates with ipr_collate, which the config cannot name for its
test loader (mmengine's inferencer reads that name), and reports the metrics it reports without the hook."""
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpose.registry import HOOKS

import ipr_plugin  # noqa: F401
from ipr_plugin.engine import IPRTestCollateHook
from utils import sample_runner_cfg


class _BatchKinds(Hook):
    """Records what each test batch's ``inputs`` is: one stacked tensor (ipr_collate) or a list (pseudo_collate)."""

    def __init__(self, kinds: list) -> None:
        self.kinds = kinds

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.kinds.append(type(data_batch['inputs']).__name__)


def _test(coco_sample, work_dir, hook: bool):
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, max_iters=1), logger_interval=1)
    cfg.model.data_preprocessor = dict(cfg.model.data_preprocessor, type='IPRDataPreprocessor')
    # a loader worker: the collate function set before the first batch must reach the worker's loop
    cfg.test_dataloader = dict(cfg.val_dataloader, num_workers=1, persistent_workers=False, batch_size=8)
    assert 'collate_fn' not in cfg.test_dataloader
    cfg.default_hooks.pop('checkpoint')  # its save_best needs a train loop
    kinds: list = []
    cfg.custom_hooks = [dict(type='IPRTestCollateHook')] if hook else []
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_BatchKinds(kinds))
    return runner.test(), kinds


def test_a_test_run_collates_with_ipr_collate_and_reports_the_same_metrics(coco_sample, tmp_path):
    metrics, kinds = _test(coco_sample, tmp_path / 'hook', hook=True)
    plain, plain_kinds = _test(coco_sample, tmp_path / 'plain', hook=False)
    assert len(kinds) == len(plain_kinds) > 1
    assert set(kinds) == {'Tensor'} and set(plain_kinds) == {'list'}
    assert 'coco/AP' in metrics and metrics == plain


def test_the_fast_configs_collate_at_test_time_as_they_validate(repo_root):
    for name in ('fast', 'fast-compile'):
        cfg = Config.fromfile(str(repo_root / f'configs/ipr_res50_{name}-8xb64-210e_coco-256x256.py'))
        assert cfg.val_dataloader.collate_fn == dict(type='ipr_collate')
        assert 'collate_fn' not in cfg.test_dataloader  # what lets MMPoseInferencer build from the config
        assert dict(type='IPRTestCollateHook') in cfg.custom_hooks


def test_a_collate_function_that_is_not_registered_is_named():
    with pytest.raises(ValueError, match="'no_such_collate' is not a function registered"):
        HOOKS.build(dict(type='IPRTestCollateHook', collate_fn=dict(type='no_such_collate')))
    hook = IPRTestCollateHook(dict(type='default_collate'))
    assert hook.collate_fn([torch.zeros(2), torch.ones(2)]).shape == (2, 2)

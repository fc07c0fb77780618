"""mmengine's hooks as its documentation says: a default hook of any name switched off by None, and Runner.val()
on a config with save_best returning its metrics."""
import pytest
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.engine.hook_fixes import MMENGINE_DEFAULT_HOOKS, patch_hooks, without_switched_off
from ipr_plugin.engine.patching import WRAPPER_MARK
from utils import sample_runner_cfg


def _cfg(coco_sample, work_dir) -> Config:
    return sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, max_iters=2, val_interval=2),
                             logger_interval=1)


def _hook_types(runner: Runner) -> set:
    return {type(hook).__name__ for hook in runner.hooks}


def test_validation_alone_returns_its_metrics_with_save_best_and_saves_no_checkpoint(coco_sample, tmp_path):
    cfg = _cfg(coco_sample, tmp_path)
    assert cfg.default_hooks.checkpoint.save_best == 'coco/AP'  # as in every config of the plugin
    # mmengine alone fails here after the whole validation: CheckpointHook has no file_backend outside training
    metrics = Runner.from_cfg(cfg).val()
    assert set(metrics) >= {'coco/AP', 'coco/AR'} and 0 <= metrics['coco/AP'] <= 1
    assert not list(tmp_path.rglob('*.pth'))
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert "CheckpointHook: validation outside training saves no best checkpoint (save_best 'coco/AP'" in log


@pytest.mark.parametrize('name, hook_type', [
    ('finite_loss', 'FiniteLossHook'), ('checkpoint_fit', 'CheckpointFitHook'),
    ('metric_key_check', 'MetricKeyCheckHook'), ('badcase', 'BadCaseAnalysisHook'),
    ('visualization', 'PoseVisualizationHook')])
def test_a_default_hook_of_any_name_is_switched_off_by_none(coco_sample, tmp_path, name, hook_type):
    cfg = _cfg(coco_sample, tmp_path)
    assert hook_type in _hook_types(Runner.from_cfg(cfg.copy()))
    # what --cfg-options default_hooks.NAME=None does to the config (mmengine alone: a bare AssertionError)
    cfg.merge_from_dict({f'default_hooks.{name}': None})
    kept = _hook_types(Runner.from_cfg(cfg))
    assert hook_type not in kept and {'CheckpointHook', 'LoggerHook', 'FiniteLossHook' if name != 'finite_loss'
                                      else 'CheckpointFitHook'} <= kept


def test_none_still_removes_mmengine_own_defaults(coco_sample, tmp_path):
    cfg = _cfg(coco_sample, tmp_path)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.timer = None
    kept = _hook_types(Runner.from_cfg(cfg))
    assert not kept & {'CheckpointHook', 'IterTimerHook'} and 'LoggerHook' in kept


def test_only_the_none_entries_mmengine_refuses_are_dropped():
    hooks = dict(logger=None, checkpoint=dict(type='CheckpointHook'), finite_loss=None, badcase=dict(type='X'))
    assert without_switched_off(hooks) == dict(logger=None, checkpoint=dict(type='CheckpointHook'),
                                               badcase=dict(type='X'))
    assert without_switched_off(None) is None and without_switched_off({}) == {}


def test_the_names_passed_on_are_mmengine_own_defaults(coco_sample, tmp_path):
    cfg = _cfg(coco_sample, tmp_path)
    cfg.default_hooks, cfg.custom_hooks = {}, []
    defaults = _hook_types(Runner.from_cfg(cfg.copy()))
    assert len(defaults) == len(MMENGINE_DEFAULT_HOOKS)
    for name in MMENGINE_DEFAULT_HOOKS:  # each removes one of them (another name would reach mmengine's assert)
        cfg.default_hooks = {name: None}
        assert len(_hook_types(Runner.from_cfg(cfg.copy())) & defaults) == len(defaults) - 1


def test_the_fixes_are_installed_once():
    wrapped = (Runner.register_default_hooks, CheckpointHook.after_val_epoch)
    patch_hooks()
    assert (Runner.register_default_hooks, CheckpointHook.after_val_epoch) == wrapped
    # each wrapper calls mmengine's own method, not another wrapper
    for method in wrapped:
        assert not hasattr(method.__wrapped__, WRAPPER_MARK)

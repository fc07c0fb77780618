"""mmengine's hooks as its documentation says: a default hook of any name switched off by None, and Runner.val()
on a config with save_best returning its metrics."""
import functools

import pytest
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.runner import FlexibleRunner, Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.engine.hook_fixes import MMENGINE_DEFAULT_HOOKS, patch_hooks, without_switched_off
from ipr_plugin.engine.patching import FIXES_ATTR, install
from utils import runner_log, sample_runner_cfg


def _cfg(coco_sample, work_dir) -> Config:
    return sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, max_iters=2, val_interval=2),
                             logger_interval=1, val_samples=4)


def _hook_types(runner: Runner) -> set:
    return {type(hook).__name__ for hook in runner.hooks}


def test_validation_alone_returns_its_metrics_with_save_best_and_saves_no_checkpoint(coco_sample, tmp_path):
    cfg = _cfg(coco_sample, tmp_path)
    assert cfg.default_hooks.checkpoint.save_best == 'coco/AP'  # as in every config of the plugin
    # mmengine alone fails here after the whole validation: CheckpointHook has no file_backend outside training
    runner = Runner.from_cfg(cfg)
    metrics = runner.val()
    assert set(metrics) >= {'coco/AP', 'coco/AR'} and 0 <= metrics['coco/AP'] <= 1
    assert not list(tmp_path.rglob('*.pth'))
    assert ("CheckpointHook: validation outside training saves no best checkpoint (save_best 'coco/AP'"
            in runner_log(runner))


@pytest.mark.parametrize('name, hook_type', [
    ('finite_loss', 'FiniteLossHook'), ('checkpoint_fit', 'CheckpointFitHook'),
    ('metric_key_check', 'MetricKeyCheckHook'), ('crop_size_check', 'CropSizeCheckHook'),
    ('badcase', 'BadCaseAnalysisHook'),
    ('visualization', 'PoseVisualizationHook')])
def test_a_default_hook_of_any_name_is_switched_off_by_none(coco_sample, tmp_path, name, hook_type):
    cfg = _cfg(coco_sample, tmp_path)
    assert hook_type in _hook_types(Runner.from_cfg(cfg.copy()))
    # what --cfg-options default_hooks.NAME=None does to the config (mmengine alone: a bare AssertionError)
    cfg.merge_from_dict({f'default_hooks.{name}': None})
    runner = Runner.from_cfg(cfg)
    kept = _hook_types(runner)
    assert f'default hooks switched off (None): {name}\n' in runner_log(runner)
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


def test_validation_after_training_on_the_same_runner_is_mmengines(coco_sample, tmp_path):
    cfg = _cfg(coco_sample, tmp_path / 'a')
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2, save_best='coco/AP',
                                        rule='greater')
    runner = Runner.from_cfg(cfg)
    runner.train()
    best = tmp_path / 'a' / 'best_coco_AP_iter_2.pth'
    hook = next(h for h in runner.hooks if type(h).__name__ == 'CheckpointHook')
    compared = []
    save_best = hook._save_best_checkpoint
    hook._save_best_checkpoint = lambda *args: compared.append(save_best(*args))  # still mmengine's, counted
    assert best.is_file() and 'coco/AP' in runner.val()
    assert compared and best.is_file() and runner.message_hub.get_info('best_ckpt') == str(best)
    assert 'validation outside training' not in runner_log(runner)

    # the same hook object in another runner that only validates: the first run's best checkpoint stays
    other = _cfg(coco_sample, tmp_path / 'b')
    other.default_hooks.checkpoint = None
    compared.clear()
    validating = Runner.from_cfg(other)
    validating.register_hook(hook)
    assert 'coco/AP' in validating.val()
    assert not compared and best.is_file() and not list((tmp_path / 'b').rglob('*.pth'))


def test_the_fixes_are_installed_once_each():
    wrapped = (Runner.register_default_hooks, FlexibleRunner.register_default_hooks, CheckpointHook.before_train,
               CheckpointHook.after_val_epoch)
    patch_hooks()
    assert (Runner.register_default_hooks, FlexibleRunner.register_default_hooks, CheckpointHook.before_train,
            CheckpointHook.after_val_epoch) == wrapped
    # each wrapper calls mmengine's own method, not another wrapper
    for method in wrapped:
        assert not hasattr(method.__wrapped__, FIXES_ATTR)

    # another fix of a function already fixed is applied, once
    class Owner:
        @staticmethod
        def value():
            return 1

    def plus_one(original):
        return functools.wraps(original)(lambda: original() + 1)

    def times_ten(original):
        return functools.wraps(original)(lambda: original() * 10)

    for wrap in (plus_one, plus_one, times_ten, times_ten, plus_one):
        install(Owner, 'value', wrap)
    assert Owner.value() == 20


def test_a_flexible_runner_takes_none_too():
    hooks = _hook_types_of_flexible(dict(finite_loss=None, timer=None, logger=dict(type='LoggerHook')))
    assert 'IterTimerHook' not in hooks and 'LoggerHook' in hooks


def _hook_types_of_flexible(default_hooks: dict) -> set:
    runner = FlexibleRunner.__new__(FlexibleRunner)  # register_default_hooks needs only the hook list
    runner._hooks = []
    runner.register_default_hooks(default_hooks)
    return {type(hook).__name__ for hook in runner._hooks}

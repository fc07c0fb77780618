"""MetricKeyCheckHook: a save_best or monitor key that validation will not report stops the run before training,
where mmengine fails after the first validation."""
import re
from typing import Optional

import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.engine.metric_key_check_hook import KeyProblem, ReportedKeys, Watched, key_problem, reported_keys
from utils import sample_runner_cfg


def _problem(keys, metrics, stock=True) -> KeyProblem:
    return key_problem(Watched('default_hooks.checkpoint.save_best', keys, 'mmengine fails', True), metrics, stock)


def _prefixed_cfg(coco_sample, work_dir, save_best: Optional[str], check: bool = True) -> Config:
    """Two iterations of the sample config, validated after the second, its metric reporting as CrowdPose
    configs' does (prefix 'crowdpose')."""
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, max_iters=2, val_interval=2),
                            logger_interval=1, val_samples=4)
    cfg.param_scheduler = []
    cfg.val_evaluator.prefix = cfg.test_evaluator.prefix = 'crowdpose'
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2, save_best=save_best,
                                        rule='greater')
    if not check:
        del cfg.default_hooks['metric_key_check']
    return cfg


def test_a_save_best_key_validation_will_not_report_is_refused_before_training(coco_sample, tmp_path):
    # mmengine alone trains up to the first validation and fails there with a bare KeyError
    with pytest.raises(KeyError, match='coco/AP'):
        Runner.from_cfg(_prefixed_cfg(coco_sample, tmp_path / 'unchecked', 'coco/AP', check=False)).train()
    assert (tmp_path / 'unchecked' / 'iter_2.pth').is_file()

    runner = Runner.from_cfg(_prefixed_cfg(coco_sample, tmp_path / 'checked', 'coco/AP'))
    with pytest.raises(ValueError, match=re.escape(
            "save_best names 'coco/AP', but validation reports 'crowdpose/AP', 'crowdpose/AP .5', ")) as refused:
        runner.train()
    assert "save_best to 'crowdpose/AP'" in str(refused.value)
    assert runner.iter == 0 and not list((tmp_path / 'checked').glob('*.pth'))
    log = next((tmp_path / 'checked').glob('*/*.log')).read_text()
    assert f' - ValueError: {refused.value}' in log and 'Iter(train)' not in log
    # validation alone saves no best checkpoint, and a test run none either: neither looks the key up
    assert 'crowdpose/AP' in Runner.from_cfg(_prefixed_cfg(coco_sample, tmp_path / 'val', 'coco/AP')).val()
    # also where something has built the train loop (mmengine's EarlyStoppingHook does, in before_run), twice
    cfg = _prefixed_cfg(coco_sample, tmp_path / 'val_early', 'coco/AP')
    cfg.custom_hooks = [dict(type='EarlyStoppingHook', monitor='crowdpose/AP', rule='greater')]
    runner = Runner.from_cfg(cfg)
    assert 'crowdpose/AP' in runner.val() and 'crowdpose/AP' in runner.val()
    assert 'crowdpose/AP' in Runner.from_cfg(_prefixed_cfg(coco_sample, tmp_path / 'test', 'coco/AP')).test()

    # a bare key may come from a hook: warned of, and left to mmengine
    with pytest.raises(KeyError, match='combined'):
        Runner.from_cfg(_prefixed_cfg(coco_sample, tmp_path / 'bare', 'combined')).train()
    log = next((tmp_path / 'bare').glob('*/*.log')).read_text()
    assert re.search(r" - WARNING - default_hooks.checkpoint.save_best names 'combined', .* unless the validation "
                     r'loss, a hook or the validation loop adds it', log)
    assert (tmp_path / 'bare' / 'iter_2.pth').is_file()

    # the key the message gives, and 'auto', train and keep the best checkpoint
    for key in ('crowdpose/AP', 'auto'):
        Runner.from_cfg(_prefixed_cfg(coco_sample, tmp_path / key.replace('/', '_'), key)).train()
        assert (tmp_path / key.replace('/', '_') / 'best_crowdpose_AP_iter_2.pth').is_file()


def test_a_problem_is_certain_only_where_nothing_else_can_report_the_key():
    coco = ReportedKeys('IPRCocoMetric', 'coco', ['AP', 'AP .5'])
    pck = ReportedKeys('PCKAccuracy', 'PCK', None)
    assert _problem(['coco/AP .5'], [coco]) is None
    assert _problem(['auto'], [coco]) is None
    assert _problem(['PCK/anything', 'coco/AP'], [coco, pck]) is None  # names unknown: prefix only
    assert _problem(['AP'], [coco, ReportedKeys('SomeMetric', None, None)]) is None  # bare names
    assert _problem(['coco/AP'], []) is None
    assert not _problem(['val_loss'], [coco]).certain  # ValLoop's validation losses, where a model returns them
    problem = _problem(['coco/AP', 'coco/AP50'], [coco, pck])
    assert problem.certain
    assert "names 'coco/AP50', but validation reports 'coco/AP', 'coco/AP .5' (IPRCocoMetric); 'PCK/...' " \
           "(PCKAccuracy): mmengine fails" in problem.message
    # the bad entry replaced by the metric's closest name ('AP50' is written 'AP .5'), and the rule COCO's names need
    assert "save_best to ['coco/AP', 'coco/AP .5'] with rule='greater', or 'auto'" in problem.message
    # without a close one, by the metric's first name, once (so the list of rules shortens too)
    assert "save_best to ['coco/AP'] with rule='greater' (and one rule per key), or 'auto'" in \
        _problem(['coco/AP', 'coco/mean'], [coco, pck]).message
    problem = _problem(['coco/AP', 'coco/AR', 'coco/AP .5'], [ReportedKeys('CocoMetric', 'crowdpose', ['AP', 'AR'])])
    assert "names 'coco/AP', " in problem.message  # the first bad one; every bad one replaced
    assert "save_best to ['crowdpose/AP', 'crowdpose/AR', 'crowdpose/AP'] with" not in problem.message
    assert "save_best to ['crowdpose/AP', 'crowdpose/AR'] with rule='greater' (and one rule per key)" in problem.message
    assert "save_best to 'PCK/PCK'" in _problem(['pck/PCK'], [coco, pck]).message
    assert "save_best to 'coco/AP .5'" in _problem(['crowdpose/AP .5'], [coco, pck]).message
    assert "rule" not in _problem(['pck/PCK'], [pck]).message.split('Set ')[1]  # names unknown: so is the rule
    assert "rule" not in _problem(['pck/PCK'], [coco, pck]).message.split('Set ')[1]
    # the key that cannot come from elsewhere decides, wherever it stands in the list; a bare one is kept
    problem = _problem(['val_loss', 'coco/AP50'], [coco])
    assert problem.certain and "save_best to ['val_loss', 'coco/AP .5'], or 'auto'" in problem.message
    assert "save_best to 'coco/AP' with" in _problem(['combined'], [coco]).message  # alone: replaced
    assert _problem(['coco/'], [ReportedKeys('CocoMetric', 'coco', None)]).certain
    # a key that a hook, or a loop or evaluator of another class, may still report: a warning, not an error
    for keys, stock in ((['combined'], True), (['teacher/coco/AP'], False)):
        problem = _problem(keys, [coco], stock)
        assert not problem.certain and 'unless the validation loss, a hook or the validation loop adds it' \
            in problem.message
    assert _problem(['teacher/coco/AP'], [coco], stock=True).certain


def test_keys_of_mmposes_metrics_as_the_hook_sees_them():
    from mmpose.evaluation.metrics import EPE, CocoMetric, CocoWholeBodyMetric, MpiiPCKAccuracy, PCKAccuracy
    from ipr_plugin.evaluation import IPRCocoMetric
    crowd = reported_keys(CocoMetric(iou_type='keypoints_crowd', use_area=False, prefix='crowdpose'))
    assert crowd.names == IPRCocoMetric(iou_type='keypoints_crowd').reported_names and 'AP(E)' in crowd.names
    assert reported_keys(CocoWholeBodyMetric()).names is None  # a subclass: its own names
    mpii = reported_keys(MpiiPCKAccuracy())
    assert mpii.headline == "'PCK' with rule='greater'" and not mpii.prefix
    # a COCO config ported to MPII that keeps save_best='coco/AP'
    problem = _problem(['coco/AP'], [mpii])
    assert problem.certain and "reports names without a prefix (MpiiPCKAccuracy)" in problem.message
    assert "Set default_hooks.checkpoint.save_best to 'PCK' with rule='greater', or 'auto' (the first" \
        in problem.message
    epe = _problem(['coco/AP'], [reported_keys(EPE()), reported_keys(PCKAccuracy(norm_item=['head', 'bbox']))])
    assert "save_best to 'EPE' with rule='less' or 'PCKh' with rule='greater'" in epe.message
    for keys in (['PCK'], ['PCKh'], ['auto']):
        assert _problem(keys, [mpii, reported_keys(EPE())]) is None
    assert not reported_keys(PCKAccuracy(prefix='pck')).headline  # a prefix: its keys are '<prefix>/...'
    # mmpose's partition metric reports '<partition>/<prefix>/<name>' without a prefix of its own: left alone
    from mmpose.evaluation.metrics import KeypointPartitionMetric
    partition = KeypointPartitionMetric(dict(type='CocoMetric'), partitions=dict(body=list(range(17))))
    assert _problem(['coco/AP'], [reported_keys(partition)]) is None
    # the overall PCK key by class and normalisation; none where the metric reports none
    from mmpose.evaluation.metrics import JhmdbPCKAccuracy
    assert reported_keys(JhmdbPCKAccuracy(norm_item='torso')).headline == "'tPCK' with rule='greater'"
    assert reported_keys(MpiiPCKAccuracy(norm_item='bbox')).headline is None
    assert reported_keys(PCKAccuracy(norm_item=['torso', 'bbox'])).headline == "'tPCK' with rule='greater'"

    # a subclass is checked by prefix only unless it lists its names; one with its own evaluate not at all
    class Mine(IPRCocoMetric):
        def compute_metrics(self, results):
            return dict(super().compute_metrics(results), AP_mean=0.0)

    class Renamed(IPRCocoMetric):
        def evaluate(self, size):
            return {f'x/{k}': v for k, v in super().evaluate(size).items()}

    class Listed(Mine):
        reported_names = ['AP', 'AP_mean']

    assert _problem(['coco/AP_mean'], [reported_keys(Mine())]) is None
    assert _problem(['coco/AP_mean'], [reported_keys(Listed())]) is None
    assert _problem(['coco/AR'], [reported_keys(Listed())]).certain
    assert _problem(['crowdpose/AP'], [reported_keys(Mine())]).certain
    assert _problem(['x/coco/AP'], [reported_keys(Renamed())]) is None
    # mmengine's DumpResults reports nothing: the other metrics are checked as without it
    from mmengine.evaluator import DumpResults
    assert reported_keys(DumpResults(out_file_path='x.pkl')) is None


def test_monitors_are_checked_as_save_best_is(coco_sample, tmp_path):
    def cfg(name, **changes):
        config = _prefixed_cfg(coco_sample, tmp_path / name, 'crowdpose/AP')
        config.update(changes)
        return config

    # a strict EarlyStoppingHook fails in mmengine after the first validation: refused before training
    hook = dict(type='EarlyStoppingHook', monitor='coco/AP', rule='greater')
    strict = cfg('strict', custom_hooks=[dict(hook, strict=True)])
    with pytest.raises(ValueError, match=r"^EarlyStoppingHook's monitor names 'coco/AP', but validation reports "
                       r"'crowdpose/AP', .*: mmengine fails with RuntimeError after the first validation\. Set "
                       r"EarlyStoppingHook's monitor to 'crowdpose/AP' with rule='greater'$"):
        Runner.from_cfg(strict).train()
    # a lenient one would never act: warned of, and the run goes on
    lenient = cfg('lenient', custom_hooks=[hook])
    Runner.from_cfg(lenient).train()
    log = next((tmp_path / 'lenient').glob('*/*.log')).read_text()
    assert re.search(r" - WARNING - EarlyStoppingHook's monitor names 'coco/AP', .*: early stopping never acts", log)
    assert (tmp_path / 'lenient' / 'best_crowdpose_AP_iter_2.pth').is_file()
    # a ReduceOnPlateau scheduler fails in mmengine with KeyError: refused too
    plateau = cfg('plateau', param_scheduler=[dict(type='ReduceOnPlateauLR', monitor='coco/AP', rule='greater')])
    with pytest.raises(ValueError, match=r"^param_scheduler ReduceOnPlateauLR's monitor names 'coco/AP'.* Set "
                       r"param_scheduler ReduceOnPlateauLR's monitor to 'crowdpose/AP' with rule='greater'$"):
        Runner.from_cfg(plateau).train()
    # its default monitor, 'loss', a validation loss for models whose val_step returns one (not mmpose's): warned of
    with pytest.raises(KeyError, match='but got key loss is not in dict'):
        Runner.from_cfg(cfg('loss', param_scheduler=[dict(type='ReduceOnPlateauLR')])).train()
    log = next((tmp_path / 'loss').glob('*/*.log')).read_text()
    assert re.search(r" - WARNING - param_scheduler ReduceOnPlateauLR's monitor names 'loss', .*: unless the "
                     r'validation loss, a hook or the validation loop adds it, mmengine fails with KeyError', log)


class _AddsAKey(Hook):
    """A user's hook that adds a key to validation's metrics before CheckpointHook reads them."""

    def after_val_epoch(self, runner, metrics=None) -> None:
        metrics['crowdpose/AP_AR'] = metrics['crowdpose/AP'] + metrics['crowdpose/AR']


def test_keys_a_users_hook_may_add_are_warned_of_and_unbuilt_schedulers_left_alone(coco_sample, tmp_path):
    cfg = _prefixed_cfg(coco_sample, tmp_path / 'added', 'crowdpose/AP_AR')
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_AddsAKey())
    runner.train()
    assert (tmp_path / 'added' / 'best_crowdpose_AP_AR_iter_2.pth').is_file()
    log = next((tmp_path / 'added').glob('*/*.log')).read_text()
    assert "WARNING - default_hooks.checkpoint.save_best names 'crowdpose/AP_AR', " in log
    # Runner.val() leaves param_scheduler as the config wrote it, a dict here
    cfg = _prefixed_cfg(coco_sample, tmp_path / 'val', 'crowdpose/AP')
    cfg.param_scheduler = dict(type='MultiStepLR', milestones=[1])
    assert 'crowdpose/AP' in Runner.from_cfg(cfg).val()
    # a CheckpointHook of custom_hooks is named as such
    cfg = _prefixed_cfg(coco_sample, tmp_path / 'custom', 'crowdpose/AP')
    cfg.custom_hooks = [dict(type='CheckpointHook', save_best='coco/AP', rule='greater')]
    with pytest.raises(ValueError, match=r"^CheckpointHook \(custom_hooks\)\.save_best names 'coco/AP'"):
        Runner.from_cfg(cfg).train()


def test_a_custom_checkpoint_hook_is_not_named_as_the_default_one():
    from types import SimpleNamespace

    from mmengine.hooks import CheckpointHook
    from ipr_plugin.engine.metric_key_check_hook import save_best_keys
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1))))
    hooks = [CheckpointHook(interval=1), CheckpointHook(interval=1, save_best='coco/AP', rule='greater')]
    runner = SimpleNamespace(cfg=cfg, hooks=hooks)
    assert [w.setting for w in save_best_keys(runner)] == ['CheckpointHook (custom_hooks).save_best']


def test_the_key_to_set_is_the_closest_one_validation_reports():
    """COCO's names as people write them elsewhere map to CocoMetric's; a range over the IoU thresholds is its
    plain AP or AR (not 'AP .5', which a name-by-name match would pick)."""
    names = ['AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5', 'AR .75', 'AR (M)', 'AR (L)']
    coco = ReportedKeys('CocoMetric', 'coco', names)
    for key, expected in (('coco/AP50', 'coco/AP .5'), ('coco/AP75', 'coco/AP .75'), ('coco/APm', 'coco/AP (M)'),
                          ('coco/AP_L', 'coco/AP (L)'), ('coco/AR50', 'coco/AR .5'), ('coco/AP50:95', 'coco/AP'),
                          ('coco/AP .5:.95', 'coco/AP'), ('coco/AP@[.5:.95]', 'coco/AP'), ('coco/AR50-95', 'coco/AR'),
                          ('coco/mean', 'coco/AP')):
        assert f"save_best to '{expected}'" in _problem([key], [coco]).message, key


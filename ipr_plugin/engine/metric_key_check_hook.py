"""Refuse, before the first iteration, a metric key (``save_best``, a monitor) that validation will not report."""
from typing import List, NamedTuple, Optional, Sequence

from mmengine.evaluator import Evaluator
from mmengine.hooks import CheckpointHook, EarlyStoppingHook, Hook
from mmengine.logging import MMLogger
from mmengine.optim import ReduceOnPlateauParamScheduler
from mmengine.runner import BaseLoop, ValLoop
from mmpose.registry import HOOKS

from .logged import logged


class ReportedKeys(NamedTuple):
    """What one validation metric reports: ``'<prefix>/<name>'`` keys (mmengine's ``BaseMetric.evaluate``)."""
    metric: str  # its class name, for messages
    prefix: Optional[str]  # None or '': it reports bare names
    names: Optional[Sequence[str]]  # None: not known before it runs
    slash_free: bool = False  # without a prefix, its names hold no '/' (mmpose's PCK, AUC, EPE, NME metrics)


def reported_keys(metric) -> ReportedKeys:
    """What ``metric`` will report, as far as is known before it runs."""
    from mmpose.evaluation.metrics import AUC, EPE, NME, CocoMetric, PCKAccuracy
    from ipr_plugin.evaluation.coco_metric import coco_metric_names  # evaluation builds on engine
    prefix = getattr(metric, 'prefix', None)
    names = getattr(metric, 'reported_names', None)
    if names is None and type(metric) is CocoMetric:  # not its subclasses (whole-body, ...): other names
        names = coco_metric_names(metric.iou_type)
    return ReportedKeys(type(metric).__name__, prefix, names,
                        not prefix and isinstance(metric, (PCKAccuracy, AUC, EPE, NME)))


class KeyProblem(NamedTuple):
    message: str
    certain: bool  # False: the key may still come from elsewhere (a validation loss, a hook, a custom loop)


class Watched(NamedTuple):
    """Keys a run looks up in validation's metrics, and what happens without them."""
    setting: str  # as the config names it
    keys: List[str]
    consequence: str  # of a key validation does not report
    fatal: bool  # the consequence is an error (else a warning at each validation)


def watched_keys(runner) -> List[Watched]:
    """The metric keys of the runner's ``CheckpointHook`` (``save_best``), ``EarlyStoppingHook`` (``monitor``) and
    ``ReduceOnPlateauParamScheduler`` (``monitor``)."""
    watched = []
    for hook in runner.hooks:
        if isinstance(hook, CheckpointHook) and hook.save_best:
            watched.append(Watched('default_hooks.checkpoint.save_best', list(hook.key_indicators),
                                   'mmengine fails with KeyError after the first validation', True))
        elif isinstance(hook, EarlyStoppingHook):
            watched.append(Watched("EarlyStoppingHook's monitor", [hook.monitor], *(
                ('mmengine fails with RuntimeError after the first validation', True) if hook.strict else
                ('early stopping never acts (mmengine skips it, with a warning, at each validation)', False))))
    schedulers = runner.param_schedulers or []
    for scheduler in (sum(schedulers.values(), []) if isinstance(schedulers, dict) else schedulers):
        if isinstance(scheduler, ReduceOnPlateauParamScheduler):
            watched.append(Watched("ReduceOnPlateauParamScheduler's monitor", [scheduler.monitor],
                                   'mmengine fails with KeyError after the first validation', True))
    return watched


@HOOKS.register_module()
class MetricKeyCheckHook(Hook):
    """Check the metric keys a run will look up after validation against the keys validation reports.

    mmengine's ``CheckpointHook`` looks its ``save_best`` key up in the metrics only after a validation has run,
    and fails there with a bare ``KeyError: 'coco/AP'`` from inside mmengine; so does a
    ``ReduceOnPlateauParamScheduler`` with its ``monitor``, and a strict ``EarlyStoppingHook`` (a lenient one
    skips early stopping at every validation, with a warning). A config that inherits a COCO one and evaluates
    under another prefix (mmpose's CrowdPose configs: ``prefix='crowdpose'``), or names a key the metric does
    not have (``'coco/AP50'`` for ``'coco/AP .5'``), trains a whole validation interval, often hours, before
    that error. This hook raises ``ValueError`` before the first iteration instead, naming the setting, the
    key, what the metrics report and what to set (a lenient ``EarlyStoppingHook``'s: a warning).

    It raises only where the key cannot be reported, with mmengine's own ``ValLoop`` and ``Evaluator``: a key
    ``'<prefix>/<name>'`` whose prefix is no metric's, or whose name the metric of that prefix does not list
    (``reported_names`` of ``IPRCocoMetric``, which a subclass reporting more names extends; mmpose's
    ``CocoMetric`` itself). mmpose's PCK, AUC, EPE and NME metrics report names without a prefix and without
    '/', so ``'coco/AP'`` left in a config ported to MPII is refused too.

    Where the key may still come from elsewhere it warns instead: a key without a prefix (``ValLoop`` adds
    validation losses such as ``'val_loss'`` for a model whose ``val_step`` returns them, which mmpose's do not;
    a hook may add keys), or a loop or evaluator of another class (mmdet's ``TeacherStudentValLoop`` reports
    ``'teacher/coco/AP'``). Any other metric without a prefix (mmpose's ``KeypointPartitionMetric`` reports keys
    with '/'), or ``save_best='auto'``, is left to mmengine. It runs where a validation loop is built
    (``Runner.train`` and ``Runner.val``), not in a test run.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        loop = runner._val_loop  # the property would build a test run's validation loader
        if not isinstance(loop, BaseLoop):
            return
        evaluator = getattr(loop, 'evaluator', None)
        reported = [reported_keys(metric) for metric in getattr(evaluator, 'metrics', None) or []]
        stock = type(loop).run is ValLoop.run and type(evaluator).evaluate is Evaluator.evaluate
        for watched in watched_keys(runner):
            problem = key_problem(watched, reported, stock)
            if problem and problem.certain and watched.fatal:
                raise logged(ValueError(problem.message))
            if problem:
                MMLogger.get_current_instance().warning(problem.message)


def _reports(metric: ReportedKeys, key: str) -> bool:
    if metric.slash_free:
        return '/' not in key  # names unknown before it runs
    head = f'{metric.prefix}/'
    name = key[len(head):]
    return key.startswith(head) and bool(name) and (metric.names is None or name in metric.names)


def _listed(metric: ReportedKeys) -> str:
    if metric.slash_free:
        return 'names without a prefix'
    if metric.names:
        return ', '.join(repr(f'{metric.prefix}/{name}') for name in metric.names)
    return repr(f'{metric.prefix}/...')


def _suggestion(key: str, metrics: List[ReportedKeys]) -> str:
    """The key's name under the prefix of a metric that lists it; else a key of the metric whose prefix differs
    from the key's in case only, or of the first metric."""
    metrics = [m for m in metrics if m.prefix]
    if not metrics:
        return "a name it reports, without a prefix (mmpose's PCK configs: 'PCK'; EPE: 'EPE' with rule='less')"
    name = key.split('/', 1)[-1]
    for metric in metrics:
        if metric.names and name in metric.names:
            return f'{metric.prefix}/{name}'
    metric = next((m for m in metrics if key.lower().startswith(f'{m.prefix}/'.lower())), metrics[0])
    return f'{metric.prefix}/{metric.names[0] if metric.names else name}'


def key_problem(watched: Watched, metrics: List[ReportedKeys], stock: bool = True) -> Optional[KeyProblem]:
    """The first of ``watched.keys`` that validation metrics reporting ``metrics`` do not report, or None.
    ``stock``: the loop and evaluator are mmengine's ``ValLoop`` and ``Evaluator``, which report the metrics'
    keys and validation losses only."""
    if not metrics or not all(metric.prefix or metric.slash_free for metric in metrics):  # bare names: anything
        return None
    keys = watched.keys
    for key in keys:
        if key == 'auto' or any(_reports(metric, key) for metric in metrics):
            continue
        reported = '; '.join(f'{_listed(m)} ({m.metric})' for m in metrics)
        suggested = _suggestion(key, metrics)
        if any(m.prefix for m in metrics):
            suggested = repr([_suggestion(k, metrics) if k == key else k for k in keys] if len(keys) > 1
                             else suggested)
        certain = stock and '/' in key
        unless = '' if certain else 'unless the validation loss, a hook or the validation loop adds it, '
        auto = " (or 'auto', the first key validation reports)" if watched.setting.endswith('save_best') else ''
        return KeyProblem(f"{watched.setting} names '{key}', but validation reports {reported}: {unless}"
                          f'{watched.consequence}. Set {watched.setting} to {suggested}{auto}', certain)
    return None

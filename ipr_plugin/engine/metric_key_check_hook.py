"""Refuse, before the first iteration, a metric key (``save_best``, a monitor) that validation will not report."""
import difflib
import re
from typing import List, NamedTuple, Optional, Sequence

from mmengine.evaluator import BaseMetric, DumpResults, Evaluator
from mmengine.hooks import CheckpointHook, EarlyStoppingHook, Hook
from mmengine.logging import MMLogger
from mmengine.optim import ReduceOnPlateauParamScheduler
from mmengine.runner import BaseLoop, ValLoop
from mmpose.registry import HOOKS

from .logged import logged

# Where hooks that leave validation's metrics as they are come from: any other hook's after_val_epoch may add keys
_KNOWN_HOOKS = ('mmengine.', 'mmpose.', 'ipr_plugin.')


class ReportedKeys(NamedTuple):
    """What one validation metric reports: ``'<prefix>/<name>'`` keys (mmengine's ``BaseMetric.evaluate``)."""
    metric: str  # its class name, for messages
    prefix: Optional[str]  # None or '': it reports bare names
    names: Optional[Sequence[str]]  # None: not known before it runs
    headline: Optional[str] = None  # for mmpose's PCK, AUC, EPE and NME metrics without a prefix (names without
    # '/'): the key their configs save, with its rule


def _pck_key(metric) -> Optional[str]:
    """The overall key an mmpose PCK metric reports (its configs save it), or None."""
    from mmpose.evaluation.metrics import JhmdbPCKAccuracy, MpiiPCKAccuracy
    norm = list(getattr(metric, 'norm_item', None) or [])
    if isinstance(metric, MpiiPCKAccuracy):
        return 'PCK' if 'head' in norm else None
    if isinstance(metric, JhmdbPCKAccuracy):
        return 'PCK' if 'bbox' in norm else 'tPCK' if 'torso' in norm else None
    return next((dict(bbox='PCK', head='PCKh', torso='tPCK')[n] for n in norm if n in ('bbox', 'head', 'torso')),
                None)


def reported_keys(metric) -> Optional[ReportedKeys]:
    """What ``metric`` will report, as far as is known before it runs; None for one that reports nothing."""
    from mmpose.evaluation.metrics import AUC, EPE, NME, CocoMetric, PCKAccuracy
    from ipr_plugin.evaluation.coco_metric import IPRCocoMetric, coco_metric_names  # evaluation builds on engine
    if isinstance(metric, DumpResults):
        return None
    # its keys need not be '<prefix>/<name>'; IPRCocoMetric's only agrees on errors first, then is mmengine's
    if type(metric).evaluate not in (BaseMetric.evaluate, IPRCocoMetric.evaluate):
        return ReportedKeys(type(metric).__name__, None, None)
    prefix = getattr(metric, 'prefix', None)
    names = None
    # the table holds for the classes themselves, not for a subclass (whole-body, a user's) unless it lists its own
    if type(metric) in (CocoMetric, IPRCocoMetric) or 'reported_names' in vars(type(metric)):
        names = getattr(metric, 'reported_names', None)
        if names is None and getattr(metric, 'iou_type', None) in ('keypoints', 'keypoints_crowd'):
            names = coco_metric_names(metric.iou_type)
    headline = None
    pck_key = _pck_key(metric) if not prefix and isinstance(metric, PCKAccuracy) else None
    if pck_key:
        headline = f"'{pck_key}' with rule='greater'"
    elif not prefix and isinstance(metric, (AUC, EPE, NME)):
        headline = f"'{type(metric).__name__}' with rule='{'greater' if isinstance(metric, AUC) else 'less'}'"
    return ReportedKeys(type(metric).__name__, prefix, names, headline)


class KeyProblem(NamedTuple):
    message: str
    certain: bool  # False: the key may still come from elsewhere (a validation loss, a hook, a custom loop)


class Watched(NamedTuple):
    """Keys a run looks up in validation's metrics, and what happens without them."""
    setting: str  # as the config names it
    keys: List[str]
    consequence: str  # of a key validation does not report
    fatal: bool  # the consequence is an error (else early stopping that never acts)


_FAILS = 'mmengine fails with {} after the first validation'


def save_best_keys(runner) -> List[Watched]:
    """The ``save_best`` keys of the runner's checkpoint hooks, looked up at validations during training
    (validation alone saves no best checkpoint, see :mod:`.hook_fixes`)."""
    watched = []
    default_checkpoint = (runner.cfg.get('default_hooks') or {}).get('checkpoint') is not None
    for hook in runner.hooks:
        if isinstance(hook, CheckpointHook):
            if hook.save_best:
                where = 'default_hooks.checkpoint' if default_checkpoint else f'{type(hook).__name__} (custom_hooks)'
                watched.append(Watched(f'{where}.save_best', list(hook.key_indicators), _FAILS.format('KeyError'),
                                       True))
            default_checkpoint = False  # mmengine registers default hooks first: later ones are custom
    return watched


def monitor_keys(runner) -> List[Watched]:
    """The ``monitor`` keys of the runner's early-stopping hooks and built ``ReduceOnPlateau`` schedulers
    (``Runner.val`` leaves schedulers unbuilt), looked up at every validation."""
    watched = []
    for hook in runner.hooks:
        if isinstance(hook, EarlyStoppingHook):
            watched.append(Watched(f"{type(hook).__name__}'s monitor", [hook.monitor], *(
                (_FAILS.format('RuntimeError'), True) if hook.strict else
                ('early stopping never acts (mmengine skips it at every validation)', False))))
    schedulers = runner.param_schedulers
    groups = schedulers.items() if isinstance(schedulers, dict) else [(None, schedulers)]
    for optimizer, group in groups:
        for scheduler in (group if isinstance(group, list) else [group]):
            if isinstance(scheduler, ReduceOnPlateauParamScheduler):
                where = f'param_scheduler {type(scheduler).__name__}' + (f' ({optimizer})' if optimizer else '')
                watched.append(Watched(f"{where}'s monitor", [scheduler.monitor], _FAILS.format('KeyError'), True))
    return watched


@HOOKS.register_module()
class MetricKeyCheckHook(Hook):
    """Check the metric keys a run will look up after validation against the keys validation reports.

    mmengine's ``CheckpointHook`` looks its ``save_best`` key up in the metrics only after a validation has run,
    and fails there with a bare ``KeyError: 'coco/AP'`` from inside mmengine; so does a ``ReduceOnPlateau``
    scheduler with its ``monitor``, and a strict ``EarlyStoppingHook`` (a lenient one skips early stopping at
    every validation). A config that inherits a COCO one and evaluates under another prefix (mmpose's CrowdPose
    configs: ``prefix='crowdpose'``), or names a key the metric does not have (``'coco/AP50'`` for
    ``'coco/AP .5'``), trains a whole validation interval, often hours, before that error. This hook raises
    ``ValueError`` before the first iteration instead, naming the setting, the key, what the metrics report and
    what to set (for a lenient ``EarlyStoppingHook``: a warning).

    It raises only where the key cannot be reported, with mmengine's own ``ValLoop`` and ``Evaluator`` and no
    hook from outside mmengine, mmpose and this plugin that could add keys after validation: a key
    ``'<prefix>/<name>'`` whose prefix is no metric's, or whose name the metric of that prefix does not list
    (``reported_names`` of ``IPRCocoMetric`` and mmpose's ``CocoMetric``; a subclass that does not define its own
    is checked by its prefix only, and a metric with its own ``evaluate`` not at all). mmpose's PCK, AUC, EPE and
    NME metrics report names without a prefix and without '/', so ``'coco/AP'`` left in a config ported to MPII
    is refused too.

    Where the key may still come from elsewhere it warns instead: a key without a prefix (``ValLoop`` adds
    validation losses such as ``'val_loss'`` for a model whose ``val_step`` returns them, which mmpose's do not),
    a loop or evaluator of another class (mmdet's ``TeacherStudentValLoop`` reports ``'teacher/coco/AP'``), or
    another hook's ``after_val_epoch``. Any other metric without a prefix (mmpose's ``KeypointPartitionMetric``
    reports keys with '/'), or ``save_best='auto'``, is left to mmengine.

    It checks the monitors before a run that validates (``Runner.train``, ``Runner.val``; not a test run), and
    ``save_best`` before training (validation alone saves no best checkpoint): after the checkpoint to start from
    is loaded, before the first iteration.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        self._check(runner, monitor_keys(runner))

    def before_train(self, runner) -> None:
        self._check(runner, save_best_keys(runner))

    def _check(self, runner, watched_keys: List[Watched]) -> None:
        loop = runner._val_loop  # the property would build a test run's validation loader
        if not isinstance(loop, BaseLoop) or not watched_keys:
            return
        evaluator = getattr(loop, 'evaluator', None)
        reported = [keys for keys in map(reported_keys, getattr(evaluator, 'metrics', None) or []) if keys]
        stock = (type(loop).run is ValLoop.run and type(evaluator).evaluate is Evaluator.evaluate
                 and not any(type(hook).after_val_epoch is not Hook.after_val_epoch
                             and not type(hook).__module__.startswith(_KNOWN_HOOKS) for hook in runner.hooks))
        for watched in watched_keys:
            problem = key_problem(watched, reported, stock)
            if problem and problem.certain and watched.fatal:
                raise logged(ValueError(problem.message))
            if problem:
                MMLogger.get_current_instance().warning(problem.message)


def _reports(metric: ReportedKeys, key: str) -> bool:
    if metric.headline:
        return '/' not in key  # names without a prefix, not all known before it runs
    head = f'{metric.prefix}/'
    name = key[len(head):]
    return key.startswith(head) and bool(name) and (metric.names is None or name in metric.names)


def _listed(metric: ReportedKeys) -> str:
    if metric.headline:
        return 'names without a prefix'
    if metric.names:
        return ', '.join(repr(f'{metric.prefix}/{name}') for name in metric.names)
    return repr(f'{metric.prefix}/...')


def _suggestion(key: str, metrics: List[ReportedKeys]) -> str:
    """The key's name under the prefix of a metric that lists it; else the closest key of the metric whose prefix
    differs from the key's in case only, or of the first metric."""
    metrics = [m for m in metrics if m.prefix]
    name = key.split('/', 1)[-1]
    for metric in metrics:
        if metric.names and name in metric.names:
            return f'{metric.prefix}/{name}'
    metric = next((m for m in metrics if key.lower().startswith(f'{m.prefix}/'.lower())), metrics[0])
    if not metric.names:
        return f'{metric.prefix}/{name}'
    # the closest name ('AP50' -> 'AP .5', 'APm' -> 'AP (M)'), compared as letters and digits only, after COCO's
    # range of thresholds ('AP50:95', 'AP .5:.95': the plain 'AP'); else the metric's first
    squashed = {_squash(n): n for n in metric.names}
    close = difflib.get_close_matches(_squash(_COCO_RANGE.sub('', name)), squashed, n=1, cutoff=0.6)
    return f'{metric.prefix}/{squashed[close[0]] if close else metric.names[0]}'


# AP or AR over COCO's IoU thresholds .50 to .95, as people write it: what CocoMetric calls plain 'AP' / 'AR'
_COCO_RANGE = re.compile(r'@?\[?\s*(0?\.5|50)\s*[:-]\s*(0?\.95|95)\]?|5095')


def _squash(name: str) -> str:
    return re.sub(r'[^0-9a-z]', '', name.lower())


def key_problem(watched: Watched, metrics: List[ReportedKeys], stock: bool = True) -> Optional[KeyProblem]:
    """The first of ``watched.keys`` that validation metrics reporting ``metrics`` do not report, or None.
    ``stock``: only mmengine's ``ValLoop`` and ``Evaluator`` and known hooks make the keys: the metrics' keys and
    validation losses."""
    if not metrics or not all(metric.prefix or metric.headline for metric in metrics):  # bare names: anything
        return None
    keys = watched.keys
    bad = [key for key in keys if key != 'auto' and not any(_reports(metric, key) for metric in metrics)]
    if not bad:
        return None
    key = next((k for k in bad if '/' in k), bad[0])  # the one that cannot come from elsewhere, if any
    reported = '; '.join(f'{_listed(m)} ({m.metric})' for m in metrics)
    if any(m.prefix for m in metrics):
        # every wrong entry of a list replaced, once; COCO's names are all AP and AR: greater is better
        # a bare key may be a validation loss's: replaced only where no prefixed one is wrong
        replace = [k for k in bad if '/' in k] or bad
        fixed = list(dict.fromkeys(_suggestion(k, metrics) if k in replace else k for k in keys))
        suggested = repr(fixed if len(keys) > 1 else fixed[0])
        named = all(any(m.names and k.startswith(f'{m.prefix}/') for m in metrics) for k in fixed)
        suggested += " with rule='greater'" if named else ''
        suggested += ' (and one rule per key)' if len(fixed) < len(keys) else ''
    else:
        suggested = ' or '.join(dict.fromkeys(m.headline for m in metrics))
    certain = stock and '/' in key
    unless = '' if certain else 'unless the validation loss, a hook or the validation loop adds it, '
    auto = ", or 'auto' (the first key validation reports)" if watched.setting.endswith('save_best') else ''
    return KeyProblem(f"{watched.setting} names '{key}', but validation reports {reported}: {unless}"
                      f'{watched.consequence}. Set {watched.setting} to {suggested}{auto}', certain)

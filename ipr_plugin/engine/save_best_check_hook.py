"""Refuse, before the first iteration, a ``save_best`` key that validation will not report."""
from typing import List, NamedTuple, Optional, Sequence

from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import BaseLoop
from mmpose.registry import HOOKS

from .logged import logged


class ReportedKeys(NamedTuple):
    """What one validation metric reports: ``'<prefix>/<name>'`` keys (mmengine's ``BaseMetric.evaluate``)."""
    metric: str  # its class name, for messages
    prefix: Optional[str]  # None or '': it reports bare names
    names: Optional[Sequence[str]]  # None: not known before it runs


@HOOKS.register_module()
class SaveBestCheckHook(Hook):
    """Check ``default_hooks.checkpoint.save_best`` against the keys the validation metrics report.

    mmengine's ``CheckpointHook`` looks its ``save_best`` key up in the metrics only after a validation has run,
    and fails there with a bare ``KeyError: 'coco/AP'`` from inside mmengine. A config that inherits a COCO one
    and evaluates under another prefix (mmpose's CrowdPose configs: ``prefix='crowdpose'``), or names a key the
    metric does not have (``'coco/AP50'`` for ``'coco/AP .5'``), trains a whole validation interval, often hours,
    before that error. This hook raises ``ValueError`` before the first iteration instead, naming the key, what
    the metrics report and the setting to change.

    A metric's prefix is checked; its names too where it lists them (``reported_names``: ``IPRCocoMetric``). A
    metric without a prefix, or ``save_best='auto'``, is left to mmengine. It runs where a validation loop is
    built (``Runner.train`` and ``Runner.val``), not in a test run.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        loop = runner._val_loop  # the property would build a test run's validation loader
        checkpoint = next((hook for hook in runner.hooks if isinstance(hook, CheckpointHook)), None)
        if not isinstance(loop, BaseLoop) or checkpoint is None or not checkpoint.save_best:
            return
        metrics = getattr(getattr(loop, 'evaluator', None), 'metrics', None) or []
        reported = [ReportedKeys(type(m).__name__, getattr(m, 'prefix', None), getattr(m, 'reported_names', None))
                    for m in metrics]
        problem = save_best_problem(checkpoint.key_indicators, reported)
        if problem:
            raise logged(ValueError(problem))


def _reports(metric: ReportedKeys, key: str) -> bool:
    head = f'{metric.prefix}/'
    name = key[len(head):]
    return key.startswith(head) and bool(name) and (metric.names is None or name in metric.names)


def _suggestion(key: str, metrics: List[ReportedKeys]) -> str:
    """The key's name under the prefix of a metric that lists it; else a key of the metric whose prefix differs
    from the key's in case only, or of the first metric."""
    name = key.split('/', 1)[-1]
    for metric in metrics:
        if metric.names and name in metric.names:
            return f'{metric.prefix}/{name}'
    metric = next((m for m in metrics if key.lower().startswith(f'{m.prefix}/'.lower())), metrics[0])
    return f'{metric.prefix}/{metric.names[0] if metric.names else name}'


def save_best_problem(keys: List[str], metrics: List[ReportedKeys]) -> Optional[str]:
    """Why validation metrics reporting ``metrics`` cannot hold every one of ``keys`` (a ``CheckpointHook``'s
    key indicators), or None."""
    if not metrics or not all(metric.prefix for metric in metrics):  # bare names can be anything
        return None
    for key in keys:
        if key == 'auto' or any(_reports(metric, key) for metric in metrics):
            continue
        reported = '; '.join(
            f"{', '.join(repr(f'{m.prefix}/{n}') for n in m.names) if m.names else repr(f'{m.prefix}/...')} "
            f'({m.metric})' for m in metrics)
        return (f"default_hooks.checkpoint.save_best names '{key}', but validation reports {reported}: mmengine "
                f"would fail with KeyError after the first validation. Set default_hooks.checkpoint.save_best="
                f"'{_suggestion(key, metrics)}' (or 'auto', the first key validation reports)")
    return None

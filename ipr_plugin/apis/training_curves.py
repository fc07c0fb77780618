"""Training curves of an mmengine run (losses, learning rate, training accuracy, validation metrics) read from the
logs mmengine writes, as one picture and a short summary.

mmpose's ``analyze_logs.py plot_curve`` keeps only log lines with an ``epoch`` field: mmengine's validation lines
have none (``KeyError`` for ``coco/AP``), nor has any line of an iteration-based run (``IndexError``).

Where the numbers come from: mmengine's ``LocalVisBackend`` (in mmpose's ``default_runtime``) writes every logged
line to ``<work_dir>/<timestamp>/vis_data/scalars.json``, one folder per start of the run (a resumed run starts a
new one). A training line has ``iter`` (counted over the whole run) and, with mmpose's
``LogProcessor(by_epoch=True)``, ``epoch``; a validation line has neither, and its ``step`` is the epoch (an
epoch-based run), the iteration (``LoggerHook(log_metric_by_epoch=False)``) or 0 (an iteration-based run with
mmengine's default). So each
validation is placed at the last training iteration logged before it (or at its ``step`` where that is later),
and in the epoch of that line: exact where a training line is logged at the end of every validated epoch or
interval (a logging interval that divides the epoch's length or the validation interval), else early by less than
one logging interval.
"""
import json
import math
import os.path as osp
from dataclasses import dataclass, field
from glob import escape, glob
from typing import Dict, List, Optional, Sequence

LOG_NAME = osp.join('vis_data', 'scalars.json')


@dataclass
class Curves:
    """What the logs of one run hold, oldest first, with what a resumed start logged again replacing the earlier
    lines from its first iteration on.

    Attributes:
        source: the path they were read from.
        logs: the ``scalars.json`` files read, oldest first.
        train: training lines: ``iter`` (1-based over the run), ``epoch`` (epoch-based runs), ``lr``, the loss
            terms (``loss``, ``loss_kpt``, ...), ``acc_pose``, timings.
        val: validation lines: the metrics (``coco/AP`` ...), ``iter`` (the last training iteration logged before
            it) and, where training lines have one, ``epoch``.
        resumed_at: the first iteration of each start after the first.
        skipped: ``'file:line: why'`` for each line or file not read.
    """
    source: str = ''
    logs: List[str] = field(default_factory=list)
    train: List[Dict[str, float]] = field(default_factory=list)
    val: List[Dict[str, float]] = field(default_factory=list)
    resumed_at: List[int] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        """Whether the epoch advanced (an iteration-based run logs ``epoch`` 1 throughout)."""
        return len({line.get('epoch') for line in self.train}) > 1

    def keys(self, lines: str, prefix: str = '') -> List[str]:
        """The numeric keys of the ``'train'`` or ``'val'`` lines, in their first order, that start with
        ``prefix`` (the positions and timings left out)."""
        found: Dict[str, None] = {}
        for line in getattr(self, lines):
            found.update((k, None) for k, v in line.items() if isinstance(v, (int, float)) and k.startswith(prefix)
                         and k not in ('iter', 'epoch', 'step', 'time', 'data_time', 'memory'))
        return list(found)


def find_logs(path: str) -> List[str]:
    """The run logs at ``path``: a work dir (every ``<timestamp>/vis_data/scalars.json`` in it, oldest first), a
    run's ``<timestamp>`` folder, or a ``scalars.json`` file itself.

    Raises:
        FileNotFoundError: ``path`` is missing, or holds no such log (naming what was looked for).
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'{path} does not exist')
    if osp.isfile(path):
        return [path]
    own = osp.join(path, LOG_NAME)
    logs = [own] if osp.isfile(own) else sorted(glob(osp.join(escape(path), '*', LOG_NAME)))
    if not logs:
        raise FileNotFoundError(
            f'{path} holds no training log: mmengine writes one per start of a run to <work_dir>/<timestamp>/'
            f"{LOG_NAME} through its LocalVisBackend (mmpose's default_runtime has it in visualizer.vis_backends)")
    return logs


def read_curves(path: str) -> Curves:
    """The curves of the run at ``path`` (see :func:`find_logs`). A line that is not a JSON object (the last line
    of a run killed while writing it) is skipped and named in ``skipped``, as is a log without training lines
    (``Runner.val()`` in the same work dir).

    Raises:
        FileNotFoundError: see :func:`find_logs`.
        ValueError: none of the logs holds a training line.
    """
    curves = Curves(source=path)
    for log in find_logs(path):
        train, val = _read_log(log, curves.skipped, start=curves.train[-1]['iter'] if curves.train else 0)
        if not train:
            curves.skipped.append(f'{log}: no training lines (a validation run?)')
            continue
        first = train[0]['iter']
        if curves.logs:
            curves.resumed_at.append(first)
        # a start resumed from an earlier checkpoint logs those iterations again: its lines replace the earlier
        curves.train = [line for line in curves.train if line['iter'] < first] + train
        curves.val = [line for line in curves.val if line['iter'] < first] + val
        curves.logs.append(log)
    if not curves.logs:
        raise ValueError(f'{path}: no training lines in ' + '; '.join(curves.skipped))
    return curves


def _read_log(log: str, skipped: List[str], start: int):
    """The training and validation lines of one log; ``start``: the last iteration of the logs before it."""
    lines = []
    with open(log, encoding='utf-8') as f:
        for number, text in enumerate(f, 1):
            try:
                line = json.loads(text)
            except ValueError:
                line = None
            if isinstance(line, dict):
                lines.append(line)
            else:
                skipped.append(f'{log}:{number}: not a JSON object' + (' (the run stopped while writing it?)'
                                                                       if text.strip() else ' (empty)'))
    train = [line for line in lines if 'iter' in line]
    # a validation before the first training line: a resumed iteration-based run validates where it resumed
    last = dict(iter=train[0]['iter'] - 1 if train else start)
    val = []
    for line in lines:
        if 'iter' in line:
            last = line
        else:
            val.append(dict(line, iter=max(line.get('step', 0), last['iter']),
                            **({'epoch': last['epoch']} if 'epoch' in last else {})))
    return train, val


def headline(curves: Curves) -> Optional[str]:
    """The validation key a summary leads with: the first ``.../AP`` (COCO), else the first key logged."""
    keys = curves.keys('val')
    return next((k for k in keys if k.endswith('/AP')), keys[0] if keys else None)


def _fmt(value: float) -> str:
    return f'{value:.4g}' if math.isfinite(value) else str(value)


def summarize(curves: Curves) -> List[str]:
    """Lines for the terminal: the logs, the span, each loss term, the headline metric's best and last value."""
    train = curves.train
    span = f"iterations {train[0]['iter']}-{train[-1]['iter']}"
    if curves.by_epoch:
        span += f", epochs {train[0]['epoch']}-{train[-1]['epoch']}"
    resumed = f", resumed at iteration {', '.join(map(str, curves.resumed_at))}" if curves.resumed_at else ''
    lines = [f'{len(curves.logs)} log(s){resumed}; {len(train)} training lines ({span}), '
             f'{len(curves.val)} validations']
    for key in curves.keys('train', 'loss'):
        points = [(line['iter'], float(line[key])) for line in train if key in line]
        bad = next((it for it, v in points if not math.isfinite(v)), None)
        finite = [v for _, v in points if math.isfinite(v)]
        text = f'{key}: first {_fmt(points[0][1])}, last {_fmt(points[-1][1])}'
        text += f', lowest {_fmt(min(finite))}' if finite else ''
        lines.append(text + (f'; non-finite from iteration {bad}' if bad is not None else ''))
    key = headline(curves)
    if key:
        points = [line for line in curves.val if key in line]
        best = max(points, key=lambda line: line[key] if math.isfinite(line[key]) else -math.inf)

        def at(line) -> str:
            epoch = f"epoch {line['epoch']}, " if curves.by_epoch and 'epoch' in line else ''
            return f"{epoch}iteration {line['iter']}"

        lines.append(f'{key}: best {_fmt(best[key])} at {at(best)}, last {_fmt(points[-1][key])} at {at(points[-1])}')
    else:
        lines.append('no validation logged yet')
    if curves.skipped:
        lines.append(f'not read: {len(curves.skipped)} ({curves.skipped[0]}' +
                     (', ...)' if len(curves.skipped) > 1 else ')'))
    return lines


def plot_curves(curves: Curves, out_file: str, metrics: Optional[Sequence[str]] = None) -> str:
    """Draw four panels to ``out_file`` (PNG, SVG or PDF by its suffix; Agg backend): the loss terms and the
    learning rate against the iteration, training accuracy (``acc*``) against the iteration, and the validation
    ``metrics`` (default: every ``.../AP`` and ``.../AR``, else the headline key) against the iteration.
    Resumed starts show as dotted lines, the first non-finite loss as a red one.

    Raises:
        ValueError: a key of ``metrics`` that validation did not log, naming the ones it did.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    logged = curves.keys('val')
    if metrics:
        missing = [k for k in metrics if k not in logged]
        if missing:
            raise ValueError(f'metrics {missing} were not logged by validation; it logged {logged or "nothing yet"}')
    else:
        metrics = [k for k in logged if k.endswith(('/AP', '/AR'))] or logged[:1]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = ((axes[0, 0], 'train', curves.keys('train', 'loss'), 'loss'),
              (axes[0, 1], 'train', curves.keys('train', 'lr'), 'learning rate'),
              (axes[1, 0], 'train', curves.keys('train', 'acc'), 'training accuracy'),
              (axes[1, 1], 'val', list(metrics), 'validation'))
    for ax, lines, keys, title in panels:
        for key in keys:
            points = [(line['iter'], float(line[key])) for line in getattr(curves, lines) if key in line]
            ax.plot(*zip(*points), 'o-' if lines == 'val' else '-', label=key, markersize=3)
        ax.set(title=title, xlabel='iteration')
        for n, it in enumerate(curves.resumed_at):
            ax.axvline(it, color='gray', linestyle=':', linewidth=1, label=None if n else 'resumed')
        if keys:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, 'not logged', ha='center', va='center', transform=ax.transAxes, color='gray')
    bad = [line['iter'] for line in curves.train
           if any(not math.isfinite(float(line[k])) for k in curves.keys('train', 'loss') if k in line)]
    if bad:
        axes[0, 0].axvline(bad[0], color='red', linestyle='--', label=f'first non-finite loss ({bad[0]})')
        axes[0, 0].legend(fontsize=8)
    fig.suptitle(curves.source, fontsize=9)
    fig.tight_layout()
    from ..arguments import written_whole
    with written_whole(out_file) as partial:
        fig.savefig(partial, dpi=100, format=osp.splitext(out_file)[1][1:] or 'png')
    plt.close(fig)
    return out_file

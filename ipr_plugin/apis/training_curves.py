"""Training curves of an mmengine run (losses, learning rate, training accuracy, validation metrics) read from the
logs mmengine writes, as one picture and a short summary.

mmpose's ``analyze_logs.py plot_curve`` keeps only log lines with an ``epoch`` field: mmengine's validation lines
have none (``KeyError`` for ``coco/AP``), nor has any line of an iteration-based run (``IndexError``).

Where the numbers come from: mmengine's ``LocalVisBackend`` (in mmpose's ``default_runtime``) writes every logged
line to ``<work_dir>/<timestamp>/vis_data/scalars.json``, one folder per start of the run (a resumed run starts a
new one). A training line has ``iter`` (counted over the whole run) and, with mmpose's
``LogProcessor(by_epoch=True)``, ``epoch``; a validation line has neither, and its ``step`` is the epoch (an
epoch-based run), the iteration (``LoggerHook(log_metric_by_epoch=False)``) or 0 (an iteration-based run with
mmengine's default). Each validation is placed by the run's schedule, read from the config mmengine dumps beside
the log (``vis_data/config.py``): at its epoch (epoch-based; drawn at the last iteration logged in that epoch, as
the logs do not record an epoch's length), at its iteration (``log_metric_by_epoch=False``, or
the validation interval of an iteration-based run). Without that file, at the last training iteration logged
before it, and the summary says "after". ``LogProcessor(log_with_hierarchy=True)``'s keys (``train/loss``,
``val/coco/AP``) are read without their ``train/`` or ``val/``. Which starts make up the run, and what the text log
and the dumped config say of each: :mod:`.training_logs` and :func:`read_curves`.
"""
import math
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from ..plotting import pyplot, save_figure
from .training_logs import (LOG_NAME, Schedule, find_logs, find_runs, no_training, read_log, read_schedule,
                            read_start, unlogged)

__all__ = ['LOG_NAME', 'Curves', 'Schedule', 'draw_curves', 'find_logs', 'find_runs', 'headline', 'plot_curves',
           'read_curves', 'read_schedule', 'run_labels', 'summarize']


@dataclass
class Curves:
    """What the logs of one run hold, oldest first, with what a resumed start logged again replacing the earlier
    lines from its first iteration on.

    Attributes:
        source: the path they were read from.
        logs: the ``scalars.json`` files read, oldest first.
        train: training lines: ``iter`` (1-based over the run), ``epoch`` (epoch-based runs), ``lr``, the loss
            terms (``loss``, ``loss_kpt``, ...), ``acc_pose``, timings.
        val: validation lines: the metrics (``coco/AP`` ...), ``iter`` (where it is drawn: see the module
            docstring), ``epoch`` (an epoch-based run's, where its config was read), ``approximate`` (1: placed
            after the last training line logged before it).
        resumed_at: where each start that resumed the run did: the iteration of the checkpoint it resumed from,
            as its text log says (a first start too: one resumed from another work dir's checkpoint), else its
            first logged iteration.
        resume_logged: for each of ``resumed_at``, whether the text log said it.
        skipped: ``'file:line: why'`` for each line or file not read.
    """
    source: str = ''
    logs: List[str] = field(default_factory=list)
    train: List[Dict[str, float]] = field(default_factory=list)
    val: List[Dict[str, float]] = field(default_factory=list)
    resumed_at: List[int] = field(default_factory=list)
    resume_logged: List[bool] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        """Whether validations are placed at epochs (an epoch-based run whose config was read)."""
        return bool(self.val) and all('epoch' in line for line in self.val)

    def first_non_finite(self) -> Dict[str, int]:
        """For each loss term that turned NaN or infinite, the first iteration where it did."""
        first: Dict[str, int] = {}
        for line in self.train:
            for key in _keys([line], 'loss'):
                if not math.isfinite(line[key]):
                    first.setdefault(key, line['iter'])
        return first


def _keys(lines: Sequence[Dict[str, float]], prefix: str = '') -> List[str]:
    """The keys of ``lines``, in their first order, that start with ``prefix`` (positions and timings left out)."""
    found: Dict[str, None] = {}
    for line in lines:
        found.update((k, None) for k in line if k.startswith(prefix) and k not in _NOT_CURVES)
    return list(found)


_NOT_CURVES = ('iter', 'epoch', 'step', 'time', 'data_time', 'memory', 'approximate')


def read_curves(path: str) -> Curves:
    """The curves of the run at ``path`` (see :func:`find_runs`): its last run, with the starts that resumed it.

    A start resumed the run where its text log says so (``Runner.resume()``'s ``resumed epoch: E, iter: I``): its
    lines replace the earlier ones after iteration ``I`` (those of an earlier start killed after its last
    checkpoint). A start whose config says ``resume = False`` begins a new run, as does, without a config or that
    line, one whose first iteration is not after the run's first; the earlier runs are left out (named in
    ``skipped``), as are lines that are not JSON objects of numbers (the last line of a run killed while writing
    it), a log without training lines (``Runner.val()`` in the same work dir) and a start without a
    ``scalars.json`` (logged without a ``LocalVisBackend``, or a test run).

    Raises:
        FileNotFoundError: see :func:`find_runs`.
        ValueError: none of the logs holds a training line.
    """
    curves = Curves(source=path)
    starts: List[int] = []  # the first iteration of each start read
    for run in find_runs(path):
        start = read_start(run)
        resumed = f' (a start resumed from iteration {start.resumed[1]})' if start.resumed else ''
        if run.log is None:
            curves.skipped.append(f'{run.folder}{resumed}: {unlogged(run.folder)}')
            continue
        train, val = read_log(run.log, curves.skipped, start.schedule)
        if not train:
            curves.skipped.append(no_training(run.log, start))
            continue
        first = train[0]['iter']
        # why the start begins a new run (None: it resumed the run; mmengine's Runner only resumes with resume=True)
        new: Optional[str] = None
        if not start.resumed and start.resume is False:
            new = (f'a new one at iteration {first}: its config says resume = False'
                   + (f', load_from = {start.load_from!r}' if start.load_from else '') + ')')
        elif not start.resumed and starts and first <= starts[0]:  # no config or text log that says
            new = f'again at iteration {first})'
        if new is not None:
            if curves.logs:
                curves.skipped.append(f"{', '.join(curves.logs)}: an earlier run ({run.log} starts {new}")
            curves.logs, curves.train, curves.val, starts = [], [], [], []
            curves.resumed_at, curves.resume_logged = [], []
        # a start resumed from an earlier checkpoint logs its iterations again: its lines replace the earlier ones
        epoch, last = start.resumed or (None, first - 1)
        curves.train = [line for line in curves.train if line['iter'] <= last] + train
        curves.val = [line for line in curves.val if (line['epoch'] <= epoch if epoch is not None and 'epoch' in line
                                                      else line['iter'] <= last)] + val
        if start.resumed or (starts and new is None):
            curves.resumed_at.append(last if start.resumed else first)
            curves.resume_logged.append(bool(start.resumed))
        curves.logs.append(run.log)
        starts.append(first)
    if not curves.logs:
        # each skipped entry names its log and why already ("PATH: no training lines in PATH: ..." said it twice)
        raise ValueError('nothing to plot: ' + '; '.join(curves.skipped))
    return curves


def headline(curves: Curves) -> Optional[str]:
    """The validation key a summary leads with: the first ``.../AP`` (COCO), else the first key logged."""
    keys = _keys(curves.val)
    return next((k for k in keys if k.endswith('/AP')), keys[0] if keys else None)


# validation keys where lower is better (mmpose's EPE and NME metrics, validation losses); higher elsewhere
_LOWER_IS_BETTER = ('EPE', 'NME', 'loss')


def _fmt(value: float) -> str:
    return f'{value:.4g}' if math.isfinite(value) else str(value)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _at(line: Dict[str, float]) -> str:
    if 'epoch' in line:
        return f"at epoch {line['epoch']}"
    return f"{'after' if line.get('approximate') else 'at'} iteration {line['iter']}"


_SAID = 3  # entries of ``skipped`` a summary names


def summarize(curves: Curves) -> List[str]:
    """Lines for the terminal: the logs, the span, each loss term, the headline metric's best and last value."""
    train = curves.train
    span = f"iterations {train[0]['iter']}-{train[-1]['iter']}"
    if curves.by_epoch:
        first, last_epoch = curves.val[0]['epoch'], curves.val[-1]['epoch']
        span += f', validated at epoch{"" if first == last_epoch else "s"} {first}'
        span += '' if first == last_epoch else f'-{last_epoch}'
    # from the checkpoint's iteration where the text log says it, else at the start's first line
    resumed = ', '.join(f"{'from' if said else 'first lines at'} iteration {at}"
                        for at, said in zip(curves.resumed_at, curves.resume_logged))
    resumed = f', resumed ({resumed})' if resumed else ''
    lines = [f"{_count(len(curves.logs), 'log')}{resumed}; {_count(len(train), 'training line')} ({span}), "
             f"{_count(len(curves.val), 'validation')}"]
    non_finite = curves.first_non_finite()
    for key in _keys(train, 'loss'):
        values = [line[key] for line in train if key in line]
        finite = [v for v in values if math.isfinite(v)]
        text = f'{key}: first {_fmt(values[0])}, last {_fmt(values[-1])}'
        text += f', lowest {_fmt(min(finite))}' if finite else ''
        lines.append(text + (f'; non-finite from iteration {non_finite[key]}' if key in non_finite else ''))
    key = headline(curves)
    if key:
        points = [line for line in curves.val if key in line and math.isfinite(line[key])] or curves.val[-1:]
        lower = key.split('/')[-1].startswith(_LOWER_IS_BETTER)
        best = (min if lower else max)(points, key=lambda line: line[key])
        last = [line for line in curves.val if key in line][-1]
        lines.append(f"{key}: {'lowest' if lower else 'highest'} {_fmt(best[key])} {_at(best)}, "
                     f'last {_fmt(last[key])} {_at(last)}')
    else:
        lines.append('no validation logged yet')
    if curves.skipped:  # the first few: a start or an earlier run left out is not to go unsaid behind a "..."
        lines.append(f'not read: {len(curves.skipped)} ({"; ".join(curves.skipped[:_SAID])}' +
                     ('; ...)' if len(curves.skipped) > _SAID else ')'))
    return lines


def plot_curves(runs: Union[Curves, Sequence[Curves]], out_file: str, metrics: Optional[Sequence[str]] = None,
                labels: Optional[Sequence[str]] = None) -> str:
    """Draw :func:`draw_curves` to ``out_file`` (PNG, SVG or PDF by its suffix), written whole or not at all."""
    save_figure(draw_curves(runs, metrics, labels), out_file, dpi=100)
    return out_file


def draw_curves(runs: Union[Curves, Sequence[Curves]], metrics: Optional[Sequence[str]] = None,
                labels: Optional[Sequence[str]] = None):
    """Four panels (a matplotlib figure, Agg backend): the loss terms and the learning rate against the iteration,
    training accuracy (``acc*``) against the iteration, and the validation ``metrics`` (default: every ``.../AP``
    and ``.../AR``, else the headline key) against the iteration. Resumed starts show as dotted lines, the first
    non-finite loss as a dashed one.

    Several runs (a sequence of :class:`Curves`) share the panels to be compared: a colour per run, named by
    ``labels`` (default: :func:`run_labels`) in the legends, a line style per key.

    Raises:
        ValueError: a key of ``metrics`` that no run's validation logged, naming the ones they did; ``labels``
            not one per run.
    """
    runs = [runs] if isinstance(runs, Curves) else list(runs)
    if not runs:
        raise ValueError('no runs to draw')
    labels = run_labels(runs) if labels is None else list(labels)
    if len(labels) != len(runs):
        raise ValueError(f'{len(labels)} labels for {len(runs)} runs')
    if len(set(labels)) < len(labels):
        raise ValueError(f'labels {labels} name two runs alike')
    plt = pyplot()
    logged = _keys([line for curves in runs for line in curves.val])
    if metrics:
        missing = [k for k in metrics if k not in logged]
        if missing:
            raise ValueError(f'metrics {missing} were not logged by validation; it logged {logged or "nothing yet"}')
    else:
        metrics = [k for k in logged if k.endswith(('/AP', '/AR'))] or logged[:1]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = ((axes[0, 0], 'train', 'loss', 'loss'), (axes[0, 1], 'train', 'lr', 'learning rate'),
              (axes[1, 0], 'train', 'acc', 'training accuracy'), (axes[1, 1], 'val', list(metrics), 'validation'))
    several = len(runs) > 1
    for ax, kind, keys, title in panels:
        drawn = resumed = False
        # a key's line style is the same in every run: its place among the keys of all runs
        if isinstance(keys, str):
            keys = _keys([line for curves in runs for line in getattr(curves, kind)], keys)
        for n, (curves, label) in enumerate(zip(runs, labels)):
            lines = getattr(curves, kind)
            logged_here = _keys(lines)
            for k, key in enumerate(keys):
                if key not in logged_here:
                    continue
                points = [(line['iter'], line[key]) for line in lines if key in line]
                style = dict(color=f'C{n}', linestyle=_STYLES[k % len(_STYLES)]) if several else {}
                ax.plot(*zip(*points), marker='o' if kind == 'val' else None, markersize=3,
                        label=f'{label}: {key}' if several else key, **style)
                drawn = True
            for it in curves.resumed_at:
                ax.axvline(it, color=f'C{n}' if several else 'gray', linestyle=':', linewidth=1,
                           label=None if resumed else 'resumed')
                resumed = True
        ax.set(title=title, xlabel='iteration')
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, 'not logged', ha='center', va='center', transform=ax.transAxes, color='gray')
    for n, (curves, label) in enumerate(zip(runs, labels)):
        non_finite = curves.first_non_finite()
        if non_finite:
            first = min(non_finite.values())
            axes[0, 0].axvline(first, color=f'C{n}' if several else 'red', linestyle='--',
                               label=f"{label + ': ' if several else ''}first non-finite loss ({first})")
            axes[0, 0].legend(fontsize=8)
    fig.suptitle('\n'.join(curves.source for curves in runs), fontsize=9)
    fig.tight_layout()
    return fig


_STYLES = ('-', '--', '-.', ':')


def run_labels(runs: Sequence[Curves]) -> List[str]:
    """A short name per run: its work dir's name (the folder above a ``<timestamp>`` folder or a log's), or its
    whole path where two runs would share a name (numbered where it is the same path)."""
    def name(source: str) -> str:
        path = osp.abspath(source)
        if osp.isfile(path):
            path = osp.dirname(osp.dirname(osp.dirname(path)))  # <work_dir>/<timestamp>/vis_data/scalars.json
        elif osp.isfile(osp.join(path, LOG_NAME)):
            path = osp.dirname(path)
        return osp.basename(path)
    names = [name(curves.source) for curves in runs]
    labels = [n if names.count(n) == 1 else curves.source for n, curves in zip(names, runs)]
    return [f'{label} ({labels[:i].count(label) + 1})' if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]

"""Finding and reading the logs mmengine writes for each start of a run, for :mod:`.training_curves`.

A start of a run (``Runner.train()``, ``val()`` or ``test()``) writes a ``<work_dir>/<timestamp>`` folder: the text
log ``<timestamp>.log`` always, and, through mmengine's ``LocalVisBackend`` only, ``vis_data/scalars.json`` (each
logged line) and ``vis_data/config.py`` (the config of that start). What the scalars do not say is read from the
other two: the schedule that places validations, whether the start resumed the run (the config's ``resume``, the
text log's ``resumed epoch: E, iter: I``, written by ``Runner.resume()``), the logger interval.
"""
import json
import os.path as osp
import re
from collections import Counter
from contextlib import suppress
from glob import escape, glob
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..paths import link_note

LOG_NAME = osp.join('vis_data', 'scalars.json')
CONFIG_NAME = osp.join('vis_data', 'config.py')
# mmengine's LogProcessor(log_with_hierarchy=True) prefixes every key but the positions with the mode
_MODES = ('train/', 'val/')


class RunFolder(NamedTuple):
    """One start of a run: its ``<timestamp>`` folder ('' for a ``scalars.json`` outside one) and its
    ``scalars.json`` (None where it has none)."""
    folder: str
    log: Optional[str]


def text_log(folder: str) -> str:
    """The text log mmengine writes in a start's ``<timestamp>`` folder."""
    folder = osp.normpath(folder)
    return osp.join(folder, osp.basename(folder) + '.log')


def _folder_of(log: str) -> str:
    """The ``<timestamp>`` folder of a ``scalars.json``; '' where it is not in ``<timestamp>/vis_data``."""
    vis_data = osp.dirname(osp.abspath(log))
    return osp.dirname(vis_data) if osp.basename(vis_data) == 'vis_data' else ''


def _is_start(folder: str) -> bool:
    return osp.isfile(osp.join(folder, LOG_NAME)) or osp.isfile(text_log(folder))


def find_runs(path: str) -> List[RunFolder]:
    """The starts at ``path``, oldest first: a work dir (each ``<timestamp>`` folder with a ``scalars.json`` or a
    text log), a run's ``<timestamp>`` folder, or a ``scalars.json`` file itself.

    Raises:
        FileNotFoundError: ``path`` is missing, or none of its starts has a ``scalars.json`` (naming what was
            looked for, and why its run folders have none).
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'{path} does not exist{link_note(path)}')
    if osp.isfile(path):
        return [RunFolder(_folder_of(path), path)]
    folders = [path] if _is_start(path) else sorted(
        folder[:-1] for folder in glob(osp.join(escape(path), '*', '')) if _is_start(folder[:-1]))
    runs = [RunFolder(folder, osp.join(folder, LOG_NAME) if osp.isfile(osp.join(folder, LOG_NAME)) else None)
            for folder in folders]
    if not any(run.log for run in runs):
        why = Counter(unlogged(folder) for folder in folders)
        raise FileNotFoundError(
            f'{path} holds no training log: mmengine writes one per start of a run to <work_dir>/<timestamp>/'
            f"{LOG_NAME} through its LocalVisBackend (mmpose's default_runtime has it in visualizer.vis_backends)"
            + ''.join(f'; {n} of its run folders: {reason}' if len(why) > 1 else
                      f'; its {n} run folder(s) have none: {reason}' for reason, n in why.items()))
    return runs


def find_logs(path: str) -> List[str]:
    """The ``scalars.json`` of each start at ``path`` (see :func:`find_runs`), oldest first."""
    return [run.log for run in find_runs(path) if run.log]


def unlogged(folder: str) -> str:
    """Why a start's folder has no ``scalars.json``: a ``LocalVisBackend`` writes ``vis_data/config.py`` as the
    runner is built, so with that file the start logged no line; without it the run had no such backend (say what
    it had, from the config mmengine dumps in the work dir, and what to add: TensorBoard's, W&B's or MLflow's logs
    are not read, to need none of them)."""
    if osp.isfile(osp.join(folder, CONFIG_NAME)):
        return 'no training log (a test run, or a run stopped before its first logged line)'
    dumped = sorted(glob(osp.join(escape(osp.dirname(osp.normpath(folder))), '*.py')), key=osp.getmtime)[-1:]
    cfg = _config(dumped[0]) if dumped else None
    backends = vis_backends(cfg) if cfg is not None else None
    said = (f' (visualizer.vis_backends = [{", ".join(backends)}] in {dumped[0]})'
            if backends is not None and 'LocalVisBackend' not in backends else '')
    return (f"logged without mmengine's LocalVisBackend{said}: add dict(type='LocalVisBackend') to "
            "visualizer.vis_backends to plot its curves (TensorBoard's, W&B's or MLflow's logs are not read)")


def vis_backends(cfg: Any) -> Optional[List[str]]:
    """The class names of a config's ``visualizer.vis_backends``; None where it has no visualizer."""
    visualizer = cfg.get('visualizer')
    if not isinstance(visualizer, dict):
        return None
    return [str(backend.get('type', '?')).split('.')[-1] if isinstance(backend, dict) else getattr(
        backend, '__name__', str(backend)) for backend in visualizer.get('vis_backends') or []]


def _config(path: str) -> Any:
    """The config at ``path``; None where it is missing or unreadable."""
    from mmengine.config import Config
    with suppress(Exception):  # anything a config file can raise: the caller falls back to what the log says
        return Config.fromfile(path, import_custom_modules=False)
    return None


class Schedule(NamedTuple):
    """What places a run's validations: from its config, as mmengine dumps it beside the log."""
    by_epoch: bool
    val_interval: int
    val_begin: int
    metric_by_epoch: bool  # LoggerHook(log_metric_by_epoch): a validation line's step is the epoch (else the iter)


def _schedule(cfg: Any) -> Optional[Schedule]:
    with suppress(Exception):  # a config with values of other types: placed as without one
        train_cfg = cfg.get('train_cfg') or {}
        loop = train_cfg.get('type', 'EpochBasedTrainLoop' if train_cfg.get('by_epoch', True) else 'IterBasedTrainLoop')
        if loop in ('EpochBasedTrainLoop', 'IterBasedTrainLoop'):
            return Schedule(loop == 'EpochBasedTrainLoop', int(train_cfg.get('val_interval', 1)),
                            int(train_cfg.get('val_begin', 1)), bool(_logger(cfg).get('log_metric_by_epoch', True)))
    return None


def _logger(cfg: Any) -> Dict[str, Any]:
    return (cfg.get('default_hooks') or {}).get('logger') or {}


def read_schedule(log: str) -> Optional[Schedule]:
    """The schedule of the run that wrote ``log``; None where its ``config.py`` is missing or unreadable, or its
    loop is neither mmengine's epoch- nor iteration-based one."""
    cfg = _config(osp.join(osp.dirname(log), 'config.py'))
    return None if cfg is None else _schedule(cfg)


class Start(NamedTuple):
    """What one start says of itself beyond its scalars (None: not known).

    Attributes:
        schedule: see :class:`Schedule`.
        resume: its config's ``resume`` (False: mmengine began the run anew, from ``load_from``'s weights if set).
        load_from: its config's ``load_from``.
        resumed: the epoch and iteration of the checkpoint it resumed from, as its text log says.
        trained: whether its text log shows training began (``CheckpointHook.before_train``'s line).
        logger_interval: ``default_hooks.logger.interval`` (mmengine's default 10).
        max_iters: an iteration-based run's ``train_cfg.max_iters``.
    """
    schedule: Optional[Schedule] = None
    resume: Optional[bool] = None
    load_from: Optional[str] = None
    resumed: Optional[Tuple[int, int]] = None
    trained: Optional[bool] = None
    logger_interval: Optional[int] = None
    max_iters: Optional[int] = None


_RESUMED = re.compile(r' - INFO - resumed epoch: (\d+), iter: (\d+)$')
_TRAINING = ' - INFO - Checkpoints will be saved to '
_TRAIN_LINE = re.compile(r' - INFO - (Epoch|Iter)\(train\) ')


def read_start(run: RunFolder) -> Start:
    """What :class:`Start` holds for ``run``: from its ``vis_data/config.py`` and its text log."""
    cfg = _config(osp.join(osp.dirname(run.log), 'config.py') if run.log else osp.join(run.folder, CONFIG_NAME))
    found: Dict[str, Any] = {}
    if cfg is not None:
        found.update(schedule=_schedule(cfg), resume=bool(cfg.get('resume', False)), load_from=cfg.get('load_from'))
        with suppress(TypeError, ValueError):
            found.update(logger_interval=int(_logger(cfg).get('interval', 10)))
        with suppress(TypeError, ValueError):
            if found['schedule'] and not found['schedule'].by_epoch:
                found.update(max_iters=int(cfg.get('train_cfg').get('max_iters')))
    if run.folder and osp.isfile(text_log(run.folder)):
        found['trained'] = False
        # the lines sought come before the first training line: a long run's log is not read to its end
        with suppress(OSError), open(text_log(run.folder), encoding='utf-8', errors='replace') as f:
            for text in f:
                match = _RESUMED.search(text.rstrip('\n'))
                if match:
                    found['resumed'] = (int(match[1]), int(match[2]))
                found['trained'] = found['trained'] or _TRAINING in text
                if _TRAIN_LINE.search(text):
                    break
    return Start(**found)


def no_training(log: str, start: Start) -> str:
    """Why ``log`` holds no training line: an iteration-based run whose logger interval is longer than the
    iterations it trained logs none (mmengine logs a training line every ``interval`` iterations of the run)."""
    begin = start.resumed[1] if start.resumed else 0
    if (start.trained is not False and start.logger_interval and start.max_iters is not None
            and start.max_iters // start.logger_interval == begin // start.logger_interval):
        return (f'{log}: no training lines: its logger logs every {start.logger_interval} iterations '
                f'(default_hooks.logger.interval) and it trained iterations {begin + 1}-{start.max_iters} '
                f'(train_cfg.max_iters){"" if start.trained else " (or a validation run?)"}')
    return f'{log}: no training lines (a validation run?)'


def read_log(log: str, skipped: List[str],
             schedule: Optional[Schedule]) -> Tuple[List[Dict[str, float]], List[Dict[str, float]]]:
    """The training and validation lines of one log (the lines it cannot read named in ``skipped``), each
    validation placed by ``schedule`` (see :mod:`.training_curves`)."""
    lines, bad = [], []
    try:
        with open(log, encoding='utf-8') as f:
            texts = f.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f'{log} is not a log of mmengine: not UTF-8 text (byte {error.start})') from error
    for number, text in enumerate(texts, 1):
        line = _numbers(text)
        if line is None or not isinstance(line.get('iter', 0), int) or not isinstance(line.get('step', 0), int):
            bad.append(number)
        else:
            lines.append(line)
    if bad and not lines:
        raise ValueError(f'{log} is not a log of mmengine: none of its {len(texts)} lines is a JSON object of numbers'
                         if texts else f'{log} is empty')
    skipped += [f'{log}:{number}: not a JSON object of numbers' + (' (the run stopped while writing it?)'
                                                                   if number == len(texts) else '') for number in bad]
    train = [line for line in lines if 'iter' in line]
    # a validation before the first training line: a resumed iteration-based run validates where it resumed
    last = dict(iter=train[0]['iter'] - 1 if train else 0)
    val = []
    for line in lines:
        if 'iter' in line:
            last = line
            continue
        step = line.get('step', 0)
        if schedule is None:
            val.append(dict(line, iter=max(step, last['iter']), approximate=1))
        elif not schedule.metric_by_epoch:
            val.append(dict(line, iter=step))
        elif schedule.by_epoch:
            val.append(dict(line, epoch=step, iter=last['iter']))
        else:  # mmengine's IterBasedTrainLoop validates after every val_interval-th iteration from val_begin on
            interval = max(schedule.val_interval, 1)
            val.append(dict(line, iter=-(-max(last['iter'], schedule.val_begin) // interval) * interval))
    return train, val


def _numbers(text: str) -> Optional[Dict[str, float]]:
    """The line's JSON object, its values numbers (not booleans), the ``train/`` or ``val/`` of
    ``LogProcessor(log_with_hierarchy=True)`` taken off its keys; None for anything else."""
    with suppress(ValueError):
        line = json.loads(text)
        if isinstance(line, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                          for v in line.values()):
            return {_unprefixed(key): value for key, value in line.items()}
    return None


def _unprefixed(key: str) -> str:
    """``key`` without the mode a hierarchical log puts first (``train/loss``: ``loss``; ``val/coco/AP``:
    ``coco/AP``; ``train/time``: ``time``, a timing as without the hierarchy)."""
    mode = next((mode for mode in _MODES if key.startswith(mode)), '')
    return key[len(mode):]

"""One row of the accuracy study: train a variant with ``mim train``, or evaluate a trained one again with
``mim test``, and read its results back (``--reuse``: a finished run of the identical config is read, not run)."""
import argparse
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .mim_runner import MimTimeout, progress_line, run_mim
from .study_configs import MMENGINE_DIR, PREDICTIONS_FILE, RECORD_FILE, Budget, Variant, build_variant_config
from .study_report import METRIC_KEYS, diverged, nonfinite_predictions
from .study_schedule import Say



# Rows run at once (--parallel) build their configs one at a time: mmengine's Config resolves `mmpose::` paths
# through pkg_resources, whose lazy set-up fails when two threads enter it together (seen: a TypeError).
_CONFIG_LOCK = threading.Lock()


class CutOff(MimTimeout):
    """A training stopped at its time limit before it finished. ``curve``: the evaluations it had written (each
    ``iter`` with its ``AP``, as :func:`ap_curve` gives them), what is left of the row; the message quotes the
    last one."""

    def __init__(self, seconds: float, curve: List[Dict[str, Any]]) -> None:
        ap = curve[-1]['AP'] if curve else None
        last = (f'; its last evaluation: AP {float("nan") if ap is None else ap:.3f} at iteration '
                f'{curve[-1]["iter"]}' if curve else ', before its first evaluation')
        super().__init__(f'cut off by its time limit after {seconds:.0f} s{last}')
        self.curve = curve


class TimeLimitReached(RuntimeError):
    """``--time-limit`` is spent: the run was not started."""


def run_timeout(args: argparse.Namespace) -> float:
    """Seconds the next mim run may take: ``--timeout``, or what ``--time-limit`` leaves when that is less."""
    if args.deadline is None:
        return args.timeout
    left = args.deadline - time.monotonic()
    if left <= 0:
        raise TimeLimitReached(f'not run: --time-limit {args.time_limit:g} s reached')
    return min(args.timeout, left)


def _progress(name: str, say: Say) -> Callable[[str], None]:
    """Forward mmengine's training-interval lines and evaluation results (:func:`progress_line`)."""
    def on_line(line: str) -> None:
        if 'Iter(train)' in line or 'coco/AP:' in line:
            say(f'  [{name}] ' + progress_line(line))
    return on_line


def row_env_overrides(args: argparse.Namespace) -> Dict[str, str]:
    """The variables each row's mim process gets on top of this environment: a CPU study on a CUDA machine must
    not put any run on the GPU, and rows run at once share the cores (torch's default of one thread per core in
    each row oversubscribes them, and a 2-core ``--parallel 2`` study's iterations slowed down by orders of
    magnitude); a user's ``OMP_NUM_THREADS`` stands."""
    env = {'CUDA_VISIBLE_DEVICES': ''} if args.device == 'cpu' else {}
    if args.parallel > 1 and 'OMP_NUM_THREADS' not in os.environ:
        env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // args.parallel))
    return env


def _metrics(coco: Dict[str, float]) -> Dict[str, Any]:
    """The table's metrics (None where the evaluation gave none) and, under ``'coco'``, all of them."""
    out = {name: coco.get(key) for name, key in METRIC_KEYS}
    out['coco'] = coco
    return out


def _same_run(text: str) -> str:
    """A config text without its CheckpointHook's ``save_last``: whether the last weights are kept depends on the
    other rows asked for (a row whose model another row starts from keeps them), not on what the run computes;
    :func:`_complete` checks that kept weights are there when they are needed."""
    return re.sub(r'save_last=(True|False)', 'save_last=...', text)


def _complete(run_dir: Path, config_file: Path, config_text: str, needs_checkpoint: bool) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly this config (``--reuse``)."""
    record_file = run_dir / RECORD_FILE
    if not (config_file.exists() and _same_run(config_file.read_text()) == _same_run(config_text)
            and record_file.exists() and (run_dir / PREDICTIONS_FILE).exists()):
        return False
    if needs_checkpoint and not (run_dir / MMENGINE_DIR / 'last_checkpoint').exists():
        return False
    return json.loads(record_file.read_text()).get('train_time_s') is not None


def data_digest(data: Dict[str, Any]) -> str:
    """SHA-1 of the split's annotation and detection files: the config names the files, not what they hold, and
    a split rewritten in the same folder (another size, count or data seed) must not let ``--reuse`` read runs
    trained and evaluated on the old one."""
    digest = hashlib.sha1()
    for key in sorted(k for k in data if k.endswith('_ann_file') or k == 'bbox_file'):
        digest.update(Path(data[key]).read_bytes())
    return digest.hexdigest()


def _record(run_dir: Path) -> Dict[str, Any]:
    """What StudyRecordHook wrote for the run in ``run_dir`` (empty if nothing yet)."""
    record_file = run_dir / RECORD_FILE
    return json.loads(record_file.read_text()) if record_file.exists() else {}


def ap_curve(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A record's evaluations as the report keeps them: each ``iter`` with its ``AP``."""
    return [dict(iter=p['iter'], AP=p.get('coco/AP')) for p in record.get('curve', [])]


def train_variant(variant: Variant, budget: Budget, data: Dict[str, Any], args: argparse.Namespace,
                  keep_checkpoint: bool, say: Say, load_from: Optional[str] = None,
                  reuse: bool = False) -> Dict[str, Any]:
    """Train one variant with ``mim train`` (from ``load_from``'s weights if given) and return its final
    metrics, train time and AP curve; with ``reuse``, a finished run of the identical config is read instead."""
    run_dir = args.work_dir / 'runs' / variant.name / f'seed{budget.seed}'
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / 'config.py'
    with _CONFIG_LOCK:
        config_text = build_variant_config(variant, budget, data, run_dir, save_checkpoint=keep_checkpoint,
                                           load_from=load_from).dump()
    config_text += f'# data files (annotations, detections) sha1: {data_digest(data)}\n'
    start = time.monotonic()
    reused = reuse and _complete(run_dir, config_file, config_text, keep_checkpoint)
    if reused:
        say(f'[{variant.name}] reusing the finished run with this exact config in {run_dir}')
    else:
        for stale in (RECORD_FILE, PREDICTIONS_FILE, f'{MMENGINE_DIR}/last_checkpoint'):  # never read an
            (run_dir / stale).unlink(missing_ok=True)  # earlier run's results as this one's
        config_file.write_text(config_text)
        say(f'[{variant.name}] training, seed {budget.seed}' + (f', from {load_from}' if load_from else '')
            + f' ({config_file})')
        timeout = run_timeout(args)
        try:
            run_mim(['train', 'mmpose', config_file, '--work-dir', run_dir / MMENGINE_DIR],
                    timeout=timeout, env=row_env_overrides(args), on_line=_progress(variant.name, say))
        except MimTimeout as err:
            # A run stopped at the time limit after its training and final evaluation were written (the
            # process still exiting) has lost nothing: keep it, as --reuse would. One stopped earlier leaves
            # the evaluations it made (StudyRecordHook rewrites the record after each).
            if not _complete(run_dir, config_file, config_text, keep_checkpoint):
                raise CutOff(timeout, ap_curve(_record(run_dir))) from err
            say(f'[{variant.name}] stopped at the time limit after its final evaluation; its results are kept')
    record = _record(run_dir)
    if not record.get('curve') or record.get('train_time_s') is None:
        raise RuntimeError(f'{variant.name}: training ended without a complete record in {run_dir / RECORD_FILE}')
    result = dict(_metrics(record['curve'][-1]), train_time_s=record['train_time_s'],
                  wall_s=round(time.monotonic() - start, 1), work_dir=str(run_dir), config=str(config_file),
                  curve=ap_curve(record),
                  nonfinite_predictions=nonfinite_predictions(run_dir / PREDICTIONS_FILE), reused=reused)
    if load_from:
        result['init_from'] = load_from
    if diverged(result):
        say(f'[{variant.name}] DIVERGED: {result["nonfinite_predictions"][0]}/{result["nonfinite_predictions"][1]} '
            'final predictions have NaN keypoints; its AP is an artefact and it is ranked last')
    if keep_checkpoint:
        result['checkpoint'] = (run_dir / MMENGINE_DIR / 'last_checkpoint').read_text().strip()
    return result


def reevaluate(variant: Variant, trained: Dict[str, Any], seed: int, args: argparse.Namespace,
               say: Say) -> Dict[str, Any]:
    """Evaluate a trained variant's final model again with ``variant.test_cfg`` and ``variant.evaluator``
    (``mim test``, no training)."""
    run_dir = args.work_dir / 'runs' / variant.name / f'seed{seed}'
    run_dir.mkdir(parents=True, exist_ok=True)
    out_file = run_dir / 'metrics.json'
    out_file.unlink(missing_ok=True)
    options = [f'model.test_cfg.{key}={value}' for key, value in variant.test_cfg]
    options += [f'test_evaluator.{key}={value}' for key, value in variant.evaluator]
    say(f'[{variant.name}] evaluating the {variant.eval_of} model with {" ".join(options)}')
    start = time.monotonic()
    run_mim(['test', 'mmpose', trained['config'], '--checkpoint', trained['checkpoint'], '--work-dir', run_dir,
             '--out', out_file, '--cfg-options', *options], timeout=run_timeout(args), env=row_env_overrides(args),
            on_line=_progress(variant.name, say))
    coco = json.loads(out_file.read_text())
    return dict(_metrics(coco), train_time_s=None, wall_s=round(time.monotonic() - start, 1),
                work_dir=str(run_dir), curve=[], evaluated=trained['checkpoint'])


def failure_summary(err: BaseException) -> str:
    """One line for the table: the child's last exception line if the output has one, else the message's first."""
    lines = str(err).splitlines()
    raised = [ln.strip() for ln in lines if re.match(r'\s*[\w.]*(Error|Exception)\b.*:', ln)
              and 'CalledProcessError' not in ln]
    return (raised[-1] if raised else lines[0] if lines else repr(err))[:300]

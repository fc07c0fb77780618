"""Accuracy study: mmpose's integral-regression configs against this plugin's, one budget, one hard split.

It writes a synthetic COCO-layout split with ``difficulty='hard'``, trains every variant with ``mim train``
(one subprocess each: registries, CUDA state and dataloader workers never leak from one run into the next;
``--parallel N`` runs N of them at once, each row after the rows it needs),
re-evaluates the ``ours-L1`` and ``ours-JS`` models with constant keypoint scores (``mim test``), measures how
well our keypoint scores rank keypoint errors, and writes the table to ``BENCHMARKS.md``, the numbers to
``docs/accuracy_study_<UTC time>.json`` and the plot to ``docs/calibration_<UTC time>.png``, copied to
``docs/accuracy_study.json`` and ``docs/calibration.png`` as the latest study's (all under ``--out``).

Full mode (defaults) is sized for one H100 with 16 cores; ``--tiny`` is a CPU smoke run for CI that writes only
under ``--work-dir`` unless ``--out`` says otherwise.
"""
import argparse
import contextlib
import os
import sys
import threading
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..arguments import ToolHelpFormatter, below_minima, check_out_file, check_out_folder
from ..cli import command_line, invocation, tool_main
from ..locks import FolderInUse, own_folder
from ..markdown import machine_line
from ..paths import work_root
from .mim_runner import MimError, MimTimeout, kill_running
from .study_configs import DEFAULT_VARIANTS, PREDICTIONS_FILE, VARIANT_NAMES, Budget, get_variant, source_config
from .study_calibration import calibration
from .study_report import (calibration_lines, diverged, gpu_name, output_paths, run_stamp, table_rows, text_table,
                           write_outputs)
from .study_rows import CutOff, TimeLimitReached, failure_summary, reevaluate, train_variant
from .study_schedule import Say, locked, run_rows



def default_workers(parallel: int = 1) -> int:
    """Data workers per row: 14 in all where there are 16 cores or more (two left for the main process), else
    one per core, shared by the ``parallel`` rows that run at once."""
    cores = os.cpu_count() or 1
    return max(1, (14 if cores >= 16 else cores) // parallel)


# Sizes per mode; every one can be overridden by its flag. Full: 2000 x 64 samples, ~90 s of ResNet-18 training
# per variant on one H100 if the data loader (640x480 JPEGs, 14 workers; the limit) delivers ~1500 samples/s.
FULL = dict(iters=2000, batch_size=64, val_batch_size=64, num_train=2000, num_val=300, image_size=(640, 480),
            input_size=256, workers=None, curve_points=1, timeout=1800, work_dir='work_dirs/accuracy_study')
TINY = dict(iters=3, batch_size=4, val_batch_size=32, num_train=12, num_val=6, image_size=(320, 240),
            input_size=64, workers=0, curve_points=1, timeout=600, work_dir='work_dirs/accuracy_study_tiny')

MINIMA = dict(iters=1, finetune_iters=1, batch_size=1, val_batch_size=1, num_train=1, num_val=1, curve_points=1,
              base_channels=1, warmup=0, workers=0)


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line (``tools/accuracy_study.py`` is a thin wrapper around it)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=ToolHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='CPU smoke run for CI: 12/6 images at 320x240, 3 '
                   'iterations, batch 4, 64x64 input, no workers; writes under --work-dir by default')
    p.add_argument('--variants', nargs='+', choices=VARIANT_NAMES, default=list(DEFAULT_VARIANTS), metavar='VARIANT',
                   help='rows to run: ' + ', '.join(DEFAULT_VARIANTS) + ' (the default), and the ablations '
                   + ', '.join(n for n in VARIANT_NAMES if n not in DEFAULT_VARIANTS))
    p.add_argument('--backbone', choices=('resnet18', 'resnet50'), default='resnet18', help='of every row')
    p.add_argument('--base-channels', type=int, default=64, help="the ResNet's base width (64: the standard "
                   'model; 16 or 32 for CPU-sized studies, with the deconv stack narrowed in proportion)')
    p.add_argument('--iters', type=int, help=f'training iterations per variant (full {FULL["iters"]})')
    p.add_argument('--finetune-iters', type=int, metavar='ITERS',
                   help='training iterations of a row that starts from another row\'s weights (the -hm and -ft '
                   'rows; default --iters), evaluated at the spacing --iters/--curve-points gives')
    p.add_argument('--batch-size', type=int, help=f'training batch (full {FULL["batch_size"]})')
    p.add_argument('--val-batch-size', type=int, help=f'evaluation batch (full {FULL["val_batch_size"]})')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate')
    p.add_argument('--warmup', type=int, default=200, help='linear warm-up iterations (at most half the run)')
    p.add_argument('--curve-points', type=int, help='evaluate every iters/k iterations (AP curve); 1: at the end')
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='training seeds; seeds after the first '
                   'retrain the top-2 variants by AP of the first')
    p.add_argument('--num-train', type=int, help=f'synthetic train images (full {FULL["num_train"]})')
    p.add_argument('--num-val', type=int, help=f'synthetic val images (full {FULL["num_val"]})')
    p.add_argument('--image-size', type=int, nargs=2, metavar=('W', 'H'), help='synthetic image size (full 640 480)')
    p.add_argument('--input-size', type=int, help='model input, square (full 256)')
    p.add_argument('--data-seed', type=int, default=0, help='seed of the synthetic split')
    p.add_argument('--workers', type=int, help='dataloader workers per row (default: 14 with >= 16 cores, else '
                   'nproc, divided by --parallel)')
    p.add_argument('--parallel', type=int, default=1, metavar='N',
                   help='rows run at once (default 1), each in its own process; a row waits for the rows it needs. '
                   'The train times then include the contention between rows')
    p.add_argument('--device', choices=('auto', 'cuda', 'cpu'), default='auto',
                   help='auto: cuda where torch sees a GPU, else cpu')
    p.add_argument('--amp', action=argparse.BooleanOptionalAction, default=None,
                   help='bf16 AMP for every variant (default: on with CUDA, off on the CPU)')
    p.add_argument('--work-dir', help='runs, checkpoints and (by default) the data (default: '
                   'work_dirs/accuracy_study, or work_dirs/accuracy_study_tiny with --tiny, in the checkout, or in '
                   'the current folder when installed from a wheel)')
    p.add_argument('--data-root', help='synthetic data folder (default WORK_DIR/data; reused when its '
                   'parameters match)')
    p.add_argument('--out', help='folder receiving BENCHMARKS.md and docs/ (default: the checkout, or the current '
                   'folder when installed from a wheel; with --tiny: WORK_DIR/report)')
    p.add_argument('--reuse', action='store_true', help='skip a training whose run folder already holds a '
                   'finished run of the identical config (to finish an interrupted study)')
    p.add_argument('--keep-checkpoints', action='store_true', help="keep every trained variant's final weights "
                   '(by default only those another variant uses), e.g. for tools/background_share.py')
    p.add_argument('--timeout', type=float, help='seconds allowed per mim run (full 1800)')
    p.add_argument('--time-limit', type=float, metavar='SECONDS',
                   help='no run starts later than this after the start, and a running one gets only what is left; '
                   'rows cut off are reported as such and the report is still written (for machines lent for a '
                   'fixed time: leave a minute for the report)')
    return p


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the size flags left out from the mode's preset, and the device-dependent defaults."""
    preset = TINY if args.tiny else FULL
    if args.work_dir is None:  # the checkout's, from wherever the command runs (as the demo's and the benchmark's)
        args.work_dir = str(work_root() / preset['work_dir'])
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.finetune_iters is None:
        args.finetune_iters = args.iters
    # else every row fails (a zero-iteration run, an empty loader) after the data is written, and the study appends
    # a section of failed rows to BENCHMARKS.md
    for name, problem in below_minima(args, MINIMA).items():
        raise SystemExit(f"--{name.replace('_', '-')} {problem}")
    for name in ('lr', 'timeout', 'time_limit'):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be a number > 0, got {getattr(args, name)}")
    if args.parallel < 1:
        raise SystemExit(f'--parallel must be at least 1, got {args.parallel}')
    if len(set(args.seeds)) < len(args.seeds):  # a seed again would train it again over its own result
        raise SystemExit(f'--seeds must differ from each other, got {" ".join(map(str, args.seeds))}')
    if args.input_size < 32 or args.input_size % 32:  # mmpose's integral heads are told the backbone's map size
        raise SystemExit(f'--input-size must be a multiple of 32 (the ResNet stride), got {args.input_size}')
    if args.workers is None:
        args.workers = default_workers(args.parallel)
    import torch
    if args.device == 'auto':
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no CUDA device here')
    if args.amp is None:
        args.amp = args.device == 'cuda'
    if args.amp and args.device != 'cuda':
        raise SystemExit("--amp needs --device cuda: mmengine's AmpOptimWrapper refuses to train on the CPU")
    typed = dict(work_dir=args.work_dir, data_root=args.data_root, out=args.out)  # an unexpanded '~' shows here
    args.work_dir = Path(args.work_dir).resolve()
    args.data_root = Path(args.data_root).resolve() if args.data_root else args.work_dir / 'data'
    args.out = Path(args.out).resolve() if args.out else (args.work_dir / 'report' if args.tiny else work_root())
    # before the training, not after it: a read-only checkout (the default --out) lost the whole report
    checks = [(f"--{name.replace('_', '-')}", partial(check_out_folder, str(typed[name] or getattr(args, name)),
                                                      'folder'))
              for name in ('work_dir', 'data_root', 'out')]
    args.stamp = run_stamp(args.out)
    checks += [('--out', partial(check_out_file, str(path), 'report file', in_place=key == 'markdown'))
               for key, path in output_paths(args.out, args.stamp).items()]
    for flag, check in checks:
        try:
            check()
        except OSError as error:
            raise SystemExit(f'argument {flag}: {error}') from None
    args.variants = with_needs(args.variants)
    return args


def with_needs(names: Sequence[str]) -> List[str]:
    """``names`` and the variants whose models they use (re-evaluate, start from), in the study's order.

    A variant is listed after every variant it needs (``VARIANTS`` is written in that order).
    """
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(get_variant(name).needs)
    return [n for n in VARIANT_NAMES if n in wanted]


def row_order(names: Sequence[str]) -> List[str]:
    """The order rows start in: trained variants first (in ``names``' order), then the re-evaluations."""
    return sorted(names, key=lambda n: not get_variant(n).trained)


@contextlib.contextmanager
def prepared_data(args: argparse.Namespace, say: Say) -> Iterator[Dict[str, Any]]:
    """The hard synthetic split, written, or reused when the one already there was written with these
    parameters; this run's while the block runs."""
    from ..datasets.synthetic_sets import stamped_set
    start = time.monotonic()
    with stamped_set(
            str(args.data_root), 'study_data.json',
            announce=lambda: say(f'writing the hard synthetic split ({args.num_train} train / {args.num_val} val '
                                 f'images at {args.image_size[0]}x{args.image_size[1]}) to {args.data_root}'),
            num_train=args.num_train, num_val=args.num_val, image_size=tuple(args.image_size), seed=args.data_seed,
            difficulty='hard') as (data, reused):
        if reused:
            say(f'reusing the synthetic split in {args.data_root}')
        else:
            say(f'  {data["num_train_instances"]} train people, {data["num_val_instances"]} val people, '
                f'{data["num_detections"]} detector boxes ({time.monotonic() - start:.0f} s)')
        yield data


def _run_seed(names: Sequence[str], budget: Budget, data: Dict[str, Any], args: argparse.Namespace,
              results: Dict[str, Dict[str, Any]], say: Say) -> None:
    """Run ``names`` (training, then re-evaluations) with ``budget.seed``, recording results or errors."""
    used = {need for n in names for need in get_variant(n).needs}
    aborted = threading.Event()  # the study is stopping (Ctrl-C, SIGTERM, a fault): rows killed are not failures

    def source_run(name: str) -> Dict[str, Any]:
        source = results[name]
        if source.get('error') or str(budget.seed) not in source['seeds']:
            # a start cut off by the time limit leaves this row cut off too, not failed
            raise (TimeLimitReached if source.get('stopped') else RuntimeError)(f'{name} did not train')
        return source['seeds'][str(budget.seed)]

    def run_row(name: str) -> None:
        variant, entry = get_variant(name), results[name]
        try:
            if variant.trained:
                start = source_run(variant.init_from) if variant.init_from else None
                own = budget.fine_tuning(args.finetune_iters) if start else budget
                # the start's checkpoint path stays the same when it is retrained: reuse only on a reused start
                run = train_variant(variant, own, data, args, name in used or args.keep_checkpoints, say,
                                    load_from=start and start['checkpoint'],
                                    reuse=args.reuse and (start is None or start['reused']))
            else:
                run = reevaluate(variant, source_run(variant.eval_of), budget.seed, args, say)
        except (MimError, RuntimeError, OSError, ValueError, KeyError) as err:
            if aborted.is_set():  # its training killed because the study is stopping: no row to report
                return
            stopped = isinstance(err, (MimTimeout, TimeLimitReached))  # by the time limit, not by a fault
            say(f'[{name}] {"CUT OFF" if stopped else "FAILED"}: {err}')
            if entry['seeds']:  # an extra seed: the seeds done stay the row's result
                entry.setdefault('seed_errors', {})[str(budget.seed)] = failure_summary(err)
                return
            entry['error'] = failure_summary(err)
            entry['stopped'] = stopped
            if isinstance(err, CutOff) and err.curve:  # what the row got through, for the report
                entry.setdefault('cut_off', {})[str(budget.seed)] = err.curve
            return
        entry['seeds'][str(budget.seed)] = run
        say(f'[{name}] seed {budget.seed}: AP {run["AP"]:.4f}  AP50 {run["AP50"]:.4f}  AR {run["AR"]:.4f}'
            + (f'  train {run["train_time_s"]:.1f} s' if run['train_time_s'] is not None else ''))

    def abort() -> None:
        aborted.set()
        kill_running()

    run_rows(row_order(names), lambda n: get_variant(n).needs, run_row, parallel=args.parallel, on_abort=abort)


def _rank_key(run: Dict[str, Any]) -> Tuple[bool, float]:
    """Order of runs by AP, a diverged run (NaN predictions) below every other."""
    return (not diverged(run), run['AP'] if run.get('AP') is not None else -1.0)


def _ours_calibration(results: Dict[str, Dict[str, Any]], seed: int, val_ann_file: str,
                      say: Say) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """Calibration of ours-L1 and, if another of our trained variants has a higher AP, of that one too."""
    ok = {n: r['seeds'][str(seed)] for n, r in results.items()
          if get_variant(n).trains_ours and not r.get('error') and str(seed) in r['seeds']}
    if not ok:
        return [], None
    best = max(ok, key=lambda n: _rank_key(ok[n]))
    calibrations = []
    for name in dict.fromkeys(n for n in ('ours-L1', best) if n in ok):
        try:
            calibrations.append(calibration(name, Path(ok[name]['work_dir']) / PREDICTIONS_FILE, val_ann_file))
        except (OSError, ValueError, KeyError, IndexError) as err:  # reported, and the study fails at the end
            calibrations.append(dict(variant=name, error=f'{type(err).__name__}: {err}'))
            say(f'calibration of {name} FAILED: {err}')
    say(f'calibration analysed on {", ".join(c["variant"] for c in calibrations)} (best of ours by AP: {best})')
    return calibrations, best


def _say(line: str) -> None:
    print(line, flush=True)  # progress must show while a long run goes on, also through a pipe


def run_study(args: argparse.Namespace, command: str, say: Say = _say) -> int:
    """Run the whole study; returns the exit status (1 if any variant failed)."""
    started = time.monotonic()
    args = _resolve(args)
    if args.parallel > 1:
        say = locked(say)
    args.deadline = started + args.time_limit if args.time_limit else None
    try:  # another study in the same folders would delete this one's results and rewrite its data under it
        with own_folder(str(args.work_dir), 'accuracy study'):
            say(_headline(args))
            with prepared_data(args, say) as data:
                return _run_study(args, data, command, say, started)
    except FolderInUse as error:
        raise SystemExit(f'accuracy study: {error}') from None


def _headline(args: argparse.Namespace) -> str:
    width = '' if args.base_channels == 64 else f' (base width {args.base_channels})'
    return (f'accuracy study: variants {", ".join(args.variants)}; {args.backbone}{width} at {args.input_size}x'
            f'{args.input_size}, {args.iters} iterations x batch {args.batch_size}'
            f'{f" (a row with a start: {args.finetune_iters})" if args.finetune_iters != args.iters else ""}, '
            f'device {args.device}, AMP {"bf16" if args.amp else "off"}, {args.workers} workers'
            f'{f" per row, {args.parallel} rows at once" if args.parallel > 1 else ""}')


def _run_study(args: argparse.Namespace, data: Dict[str, Any], command: str, say: Say, started: float) -> int:
    """:func:`run_study` once its work folder and its synthetic split (``data``) are its own."""
    budget = Budget(depth=int(args.backbone.replace('resnet', '')), base_channels=args.base_channels,
                    input_size=args.input_size, iters=args.iters,
                    batch_size=args.batch_size, val_batch_size=args.val_batch_size, lr=args.lr, warmup=args.warmup,
                    curve_points=args.curve_points, workers=args.workers, amp=args.amp,
                    cuda=args.device == 'cuda', seed=args.seeds[0])
    results = {n: dict(notes=get_variant(n).notes, error=None, seeds={}, start=get_variant(n).init_from,
                       source=str(source_config(get_variant(n))) if get_variant(n).trained else None)
               for n in args.variants}
    _run_seed(args.variants, budget, data, args, results, say)

    if len(args.seeds) > 1:
        trained_ok = [n for n in args.variants if get_variant(n).trained and not results[n]['error']]
        top = sorted(trained_ok, key=lambda n: _rank_key(results[n]['seeds'][str(budget.seed)]), reverse=True)[:2]
        # a re-evaluation follows its model to the extra seeds, and a fine-tuned model takes its start along
        extra = with_needs(top + [n for n in args.variants if get_variant(n).eval_of in top])
        say(f'seeds {args.seeds[1:]}: retraining the top-2 by AP: {", ".join(top) or "none trained"}')
        for seed in args.seeds[1:] if top else []:
            _run_seed(extra, replace(budget, seed=seed), data, args, results, say)

    calibrations, best = _ours_calibration(results, budget.seed, data['val_ann_file'], say)
    ours_requested = any(get_variant(n).trains_ours for n in args.variants)
    report = dict(
        date=datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), command=command,
        machine=machine_line(gpu_name()),
        settings=dict(asdict(budget), tiny=args.tiny, device=args.device, seeds=args.seeds,
                      image_size=list(args.image_size), num_train=args.num_train, num_val=args.num_val,
                      warmup_iters=budget.warmup_iters, finetune_iters=args.finetune_iters, backbone=args.backbone,
                      variants=args.variants, parallel=args.parallel),
        data=data, results=results, calibration=calibrations, calibration_variant=best, ours_requested=ours_requested,
        wall_s=time.monotonic() - started)
    paths = write_outputs(report, args.out, args.stamp)

    say('\n' + text_table(table_rows(results)))
    for line in calibration_lines(calibrations, best, ours_requested):
        say(line)
    say(f'\nwrote {paths["markdown"]} (section appended), {paths["json"]}, {paths["plot"]} (and as the latest: '
        f'{paths["latest_json"].name}, {paths["latest_plot"].name})')
    failed = [n for n, r in results.items() if r['error']]
    failed += [f'calibration of {c["variant"]}' for c in calibrations if c.get('error')]
    say(f'finished in {time.monotonic() - started:.0f} s' + (f'; FAILED: {", ".join(failed)}' if failed else ''))
    return 1 if failed else 0


@tool_main('accuracy_study')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the study; ``prog``: the command's name as recorded
    (default: as this process was started, see :func:`~ipr_plugin.cli.invocation`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or invocation(sys.argv[0], 'ipr_plugin.apis.accuracy_study')
    args = build_parser(prog).parse_args(argv)
    return run_study(args, command=command_line(argv, prog))


if __name__ == '__main__':
    sys.exit(main())

"""The benchmark command: write the synthetic set, run one worker process per config, report."""
import argparse
import contextlib
import importlib
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..apis.mim_runner import kill_session
from ..arguments import (ToolHelpFormatter, add_cfg_options, below_minima, device_problems, load_coco_file,
                         load_detection_file, parser_check_out_file, parser_check_out_folder, parser_error)
from ..cli import command_line, invocation, tool_main
from ..locks import FolderInUse
from ..markdown import append_section
from ..paths import child_env, link_note, load_config, work_root
from ..processes import command_dying_with_this_process
from .coco_scale import TRAIN2017_IMAGES, VAL2017_BOXES_PER_IMAGE, VAL2017_IMAGES, train_images_for
from .plot import plot_pipelines
from .report import render_section
from .rounds import ROUND_MEASUREMENTS, merge_rounds, repeat_skip, round_order
from .spec import MEASUREMENTS, WorkerSpec, default_configs, parse_config_arg

DATA_STAMP = 'bench_synthetic.json'
PLOT_FORMATS = ('.png', '.svg', '.pdf')
IMAGE_SIZE = (640, 480)
# The writer's "normal" difficulty gives about 2.6 annotated people and 2.8 detector boxes per image (measured);
# the defaults divide by a little less, for a margin.
TRAIN_SAMPLES_PER_IMAGE = 2.4
VAL_SAMPLES_PER_IMAGE = 2.6
# --tiny: a CI-sized run. ResNet-18 instead of ResNet-50 (512 channels into the head) keeps it to minutes.
TINY = dict(num_images=8, num_val_images=4, batch_size=2, workers=1, warmup=1, iters=3, pipeline_samples=32,
            metric_images=40,
            device='cpu', cfg_options={'model.backbone.depth': 18, 'model.head.in_channels': 512})
FULL = dict(batch_size=64, warmup=20, iters=60, pipeline_samples=256, metric_images=VAL2017_IMAGES)


def _package_doc() -> str:
    """What the benchmark measures, for ``--help``: the package's docstring without its list of modules."""
    doc = importlib.import_module(__package__).__doc__ or ''
    return doc.split('\nModules:')[0].strip()


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=_package_doc(),
                                formatter_class=ToolHelpFormatter)
    p.add_argument('--configs', nargs='+', default=None, metavar='[NAME=]CONFIG',
                   help='configs to compare, the first is the anchor of the ratios (package::path allowed); '
                   'default: mmpose IPR, ours, ours-fast when present')
    p.add_argument('--data-root', default=None,
                   help='synthetic set (reused when written with the same sizes); default data/bench_synthetic in '
                   'the checkout (the current folder when installed from a wheel), or a temp dir with --tiny')
    p.add_argument('--num-images', type=int, default=None,
                   help='train images; default: enough for warm-up + window without an epoch boundary')
    p.add_argument('--num-val-images', type=int, default=None, help='val images; default: enough for eval')
    p.add_argument('--batch-size', type=int, default=None,
                   help=f'train and val batch size (default: {FULL["batch_size"]}; --tiny: less)')
    p.add_argument('--workers', type=int, default=None,
                   help='num_workers of both loaders; default 14 with >= 16 cores, else the core count')
    p.add_argument('--warmup', type=int, default=None,
                   help=f'iterations before each window (default: {FULL["warmup"]}; --tiny: less)')
    p.add_argument('--iters', type=int, default=None,
                   help=f'iterations in each window (default: {FULL["iters"]}; --tiny: less)')
    p.add_argument('--pipeline-samples', type=int, default=None,
                   help=f'samples timed in (d) (default: {FULL["pipeline_samples"]}; --tiny: less)')
    p.add_argument('--metric-images', type=int, default=None,
                   help=f'images of the predictions (g) evaluates, {VAL2017_BOXES_PER_IMAGE} boxes each '
                   f'(default: {FULL["metric_images"]}, as in COCO val2017; --tiny: less)')
    p.add_argument('--device', choices=['cuda', 'cpu'], default=None, help='default: cuda when available')
    p.add_argument('--val-data', nargs=3, default=None, metavar=('ANN_FILE', 'IMG_DIR', 'BBOX_FILE'),
                   help='a COCO-format val split with its detector boxes to use for (c) and (e) instead of the '
                   'synthetic one (e.g. real COCO images with a real detector\'s boxes)')
    p.add_argument('--skip', nargs='+', default=[], choices=MEASUREMENTS,
                   help='measurements not to run: ' + ', '.join(f'{m} ({letter})' for m, letter in zip(MEASUREMENTS,
                                                                                                       'abcdefg')))
    p.add_argument('--out', default=None,
                   help='markdown file to append to; default BENCHMARKS.md (with --tiny: none unless given)')
    p.add_argument('--tiny', action='store_true', help='CI-sized run on the CPU (ResNet-18, tiny set, 3 iters)')
    p.add_argument('--label', default=None, help='free text written with the results')
    add_cfg_options(p, help='KEY=VALUE overrides applied to every config (with --tiny, replaces its ResNet-18 ones)')
    p.add_argument('--seed', type=int, default=0, help='of the synthetic set and of every run')
    p.add_argument('--time-limit', type=float, default=None, metavar='SECONDS',
                   help='stop measuring this long after the start (data writing included): no measurement starts '
                   'later, one still running is stopped, and the section reports what finished and marks the '
                   'rest "cut off" (for machines lent for a fixed time); each config gets an equal share of the time '
                   'left when it starts, so that the comparison is not one measured row beside one cut off')
    p.add_argument('--rounds', type=int, default=1,
                   help='run (d) and (e) this many times, each config in a fresh process, the configs in alternating '
                   'order; the tables give medians, and a line every round\'s totals and ratios (for the CPU '
                   'pipeline target on a shared machine; see ipr_plugin/benchmark/rounds.py)')
    p.add_argument('--plot', default=None, metavar='FILE.png',
                   help='also draw (d) and (e) as stacked bars by step, a bar per config (with --rounds, each '
                   'round\'s total as a tick)')
    p.add_argument('--keep-work-dir', action='store_true', help='keep worker specs, results and Runner logs')
    return p


def _fill_defaults(args: argparse.Namespace) -> None:
    import torch
    defaults: Dict[str, Any] = dict(TINY) if args.tiny else dict(
        FULL, device='cuda' if torch.cuda.is_available() else 'cpu',
        workers=14 if (os.cpu_count() or 1) >= 16 else os.cpu_count(), cfg_options={})
    needed = (args.warmup or defaults['warmup']) + (args.iters or defaults['iters'])
    needed *= args.batch_size or defaults['batch_size']
    defaults.setdefault('num_images', math.ceil(needed / TRAIN_SAMPLES_PER_IMAGE))
    defaults.setdefault('num_val_images', math.ceil(needed / VAL_SAMPLES_PER_IMAGE))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.tiny:  # the checkout's, from wherever the command runs (--tiny: a temporary folder, made later)
        args.out = args.out or str(work_root() / 'BENCHMARKS.md')
        args.data_root = args.data_root or str(work_root() / 'data' / 'bench_synthetic')


def prepare_data(root: str, num_train: int, num_val: int, seed: int,
                 held: Optional[contextlib.ExitStack] = None) -> Dict[str, Any]:
    """Write the synthetic set under ``root``, or reuse it when its stamp says it was written the same way.

    ``held``: where given, the set stays this run's until it closes (another run that would rewrite it meanwhile
    stops, naming the folder); without it, only while it is checked and written.
    """
    from ..datasets.synthetic_sets import stamped_set

    def announce() -> None:
        print(f'[benchmark] writing {num_train} + {num_val} synthetic {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} images '
              f'to {root}', file=sys.stderr, flush=True)

    with contextlib.ExitStack() as own:
        data, _ = (own if held is None else held).enter_context(stamped_set(
            root, DATA_STAMP, announce, num_train=num_train, num_val=num_val, image_size=IMAGE_SIZE, seed=seed))
    return data


def given_val_split(ann_file: str, img_dir: str, bbox_file: str) -> Dict[str, Any]:
    """The ``--val-data`` split in ``prepare_data``'s keys (absolute paths and counts).

    Raises:
        FileNotFoundError: one of the three is missing.
        ValueError: ``ann_file`` is no COCO annotation file, ``bbox_file`` no JSON list (naming the file).
    """
    for path in (ann_file, img_dir, bbox_file):
        if not osp.exists(path):
            raise FileNotFoundError(f'{path} does not exist{link_note(path)}')
    coco = load_coco_file(ann_file)
    boxes = load_detection_file(bbox_file)
    return dict(val_ann_file=osp.abspath(ann_file), val_img_dir=osp.abspath(img_dir),
                bbox_file=osp.abspath(bbox_file), num_val_images=len(coco.get('images', [])),
                num_val_instances=len(coco.get('annotations', [])), num_detections=len(boxes), val_given=True)


def run_config(spec: WorkerSpec) -> Dict[str, Any]:
    """Measure one config in a fresh ``python -m ipr_plugin.benchmark.worker`` process; its result dict.

    At ``spec.deadline`` a worker still running is stopped with its whole process group (its dataloader
    workers too); what it had finished is kept, and the measurements it did not finish are listed under
    ``cut_off``. After the deadline no worker starts.
    """
    wanted = [m for m in MEASUREMENTS if m not in spec.skip]
    if spec.deadline is not None and time.time() >= spec.deadline:
        return dict(name=spec.name, config=spec.config, errors={}, cut_off=wanted)
    spec_file = osp.join(spec.work_dir, 'spec.json')
    spec.dump(spec_file)
    env = child_env()  # the worker must import this very package
    if spec.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''  # mmengine's Runner picks CUDA whenever it sees a GPU
    # what the worker prints (mmengine's log, xtcocotools' steps) goes to stderr, with the progress lines: the
    # report is all that stdout holds, so that `benchmark.py > table.md` gives the table
    # killed with this process, even by SIGKILL: a worker left training would skew the next run's timings
    proc = subprocess.Popen(command_dying_with_this_process([sys.executable, '-m', 'ipr_plugin.benchmark.worker',
                                                             spec_file]),
                            env=env, start_new_session=True, stdout=_stderr_fd())
    stopped = False
    try:
        proc.wait(timeout=None if spec.deadline is None else max(0.0, spec.deadline - time.time()))
    except subprocess.TimeoutExpired:
        stopped = True
    finally:  # the deadline, or this command interrupted: leave nothing of the worker running
        kill_session(proc)
        proc.wait()
    result = dict(name=spec.name, config=spec.config, errors={})
    if osp.exists(spec.result_file):
        with open(spec.result_file) as f:
            result = json.load(f)
    elif not stopped:
        result['errors']['worker'] = f'exit status {proc.returncode}'
        return result
    # neither measured nor failed: cut off by the worker itself (listed already), or by the stop, or by a crash
    unfinished = [m for m in wanted if m not in result and m not in result['errors']]
    if stopped:
        result['cut_off'] = unfinished
    else:  # the worker died after writing some results (a crash, not an exception it could record)
        result['errors'].update({m: f'the worker ended (exit status {proc.returncode}) before this measurement'
                                 for m in unfinished if m not in result.get('cut_off', [])})
    return result


def _stderr_fd() -> int:
    """File descriptor 2 where it is open, else ``DEVNULL`` (a command run with ``2>&-``)."""
    try:
        os.fstat(2)
        return 2
    except OSError:
        return subprocess.DEVNULL


def config_deadline(deadline: Optional[float], configs_left: int, now: Optional[float] = None) -> Optional[float]:
    """The deadline of the next of ``configs_left`` configs: an equal share of the time left before ``deadline``.

    The table is a side-by-side comparison, so a limit that lets the first config use all of it leaves a row of
    "cut off" beside a row of numbers; a config that finishes early hands what it did not use to the next.
    """
    if deadline is None:
        return None
    now = time.time() if now is None else now
    return now + max(0.0, deadline - now) / max(1, configs_left)


def settings_lines(args: argparse.Namespace, data: Dict[str, Any]) -> List[str]:
    """The run's settings and caveats, as markdown bullet text."""
    needed = (args.warmup + args.iters) * args.batch_size
    val = (f'{data["num_val_images"]} val images ({data["num_detections"]} detector boxes, '
           f'{data["num_detections"] / max(data["num_val_images"], 1):.1f} per image)')
    if data.get('val_given'):
        val = f'val split given with --val-data: `{data["val_ann_file"]}`, {val}'
    lines = [
        f'Data: synthetic COCO layout (`write_synthetic_coco`, seed {args.seed}), {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} '
        f'JPEG: {data["num_train_images"]} train images ({data["num_train_instances"]} instances); {val}',
        f'Run: device {args.device}, batch size {args.batch_size} (train and val), workers {args.workers}, '
        f'{args.warmup} warm-up + {args.iters} timed iterations for (a) (b) (c), {args.pipeline_samples} samples '
        'for (d) and (e), in dataset order; a batch for (f); each config in its own process, one after another; '
        'eval = runner.val() with CocoMetric (final COCO evaluation outside the window)'
        + (f'; time limit {args.time_limit:g} s, shared equally by the configs still to run'
           if args.time_limit else ''),
    ]
    if args.rounds > 1:
        lines.append(f'Rounds: (d) and (e) run {args.rounds} times, each config in a fresh process, the configs '
                     'forward, then backward, and so on; their tables give the medians over the rounds (a step\'s '
                     'and the total\'s medians are taken separately)')
    if _runs(args, 'metric'):
        lines.append(f'(g): the config\'s val evaluator on predictions for {args.metric_images} images with '
                     f'{VAL2017_BOXES_PER_IMAGE} boxes each (`write_coco_scale_set`, no images; COCO val2017: 5000 '
                     'images, 104,125 boxes): the main process\'s work after the last batch of an evaluation, '
                     'made twice in one process (the host memory kept is what the second added to what the first '
                     'left); the config\'s val dataset class built from that annotation file and its detection '
                     f'file; and its train dataset class from a ground-truth file of '
                     f'{train_images_for(args.metric_images)} images (COCO train2017: '
                     f'{TRAIN2017_IMAGES}, as many more than val2017) (no images read; peaks are the process\'s '
                     'resident-memory high-water mark, reset before)')
    if args.cfg_options:
        opts = ' '.join(f'{k}={v}' for k, v in args.cfg_options.items())
        tiny = ' (--tiny: ResNet-18, not the configs\' ResNet-50)' if args.tiny else ''
        lines.append(f'cfg-options on every config{tiny}: `{opts}`')
    if data['num_train_instances'] < needed and _runs(args, 'train', 'loader'):
        lines.append(f'Caveat: {data["num_train_instances"]} train instances < {needed} samples of warm-up + '
                     'window: the train and loader windows cross epoch boundaries')
    if data['num_detections'] < needed and _runs(args, 'eval'):
        lines.append(f'Caveat: {data["num_detections"]} val boxes < {needed}: the eval window is shorter')
    return lines + worker_wave_caveats(args, data)


def _runs(args: argparse.Namespace, *measurements: str) -> bool:
    """Whether any of ``measurements`` (timed windows) is run, i.e. not all are in ``--skip``."""
    return not set(measurements) <= set(args.skip)


def worker_wave_caveats(args: argparse.Namespace, data: Dict[str, Any]) -> List[str]:
    """Windows too short to average over the loader's worker rounds.

    Each of W workers builds whole batches, so a fresh loader delivers its first W batches almost at once and
    then little until the workers' second batches are done. A window of a few rounds (>= 3 W batches) averages
    that out; a shorter one measures where it happens to fall between two rounds, too high or too low.
    """
    if not args.workers:
        return []
    windows = {}
    if _runs(args, 'train', 'loader'):
        windows['(a) and (b)'] = args.iters
    if _runs(args, 'eval'):
        val_batches = math.ceil(data['num_detections'] / args.batch_size)
        windows['(c)'] = max(0, min(args.iters, val_batches - args.warmup))
    rounds = 3 * args.workers
    return [f'Caveat: the {name} window holds {n} batches, fewer than three rounds of the {args.workers} workers '
            f'({rounds} batches): the workers\' start-up rounds can dominate it; use more iterations and images'
            for name, n in windows.items() if n < rounds]


# The counts a run needs at least (None: unset, a default follows): below them a worker fails, divides by zero or
# silently measures nothing.
MINIMA = dict(num_images=1, num_val_images=1, batch_size=1, workers=0, warmup=0, iters=1, pipeline_samples=1,
              metric_images=1, rounds=1)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what cannot work (exit 2 with argparse's one line naming the flag), and fill in the defaults."""
    problems = below_minima(args, MINIMA)
    if args.time_limit is not None and not args.time_limit > 0:
        problems['time_limit'] = f'must be a number of seconds > 0, got {args.time_limit}'
    if args.device is not None:  # (the default, cuda only where there is one, is left to _fill_defaults)
        problems.update(device_problems(args.device))
    if args.rounds > 1 and set(ROUND_MEASUREMENTS) <= set(args.skip):
        problems['rounds'] = 'repeats (d) and (e), and --skip leaves both out'
    if args.plot is not None and osp.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
        problems['plot'] = f'{args.plot}: give a file ending in {", ".join(PLOT_FORMATS)}'
    parser_error(parser, problems)
    _fill_defaults(args)  # --out's default
    # before minutes of measuring, not after: --out is appended to, --plot written beside its place and moved there
    for flag, path in (('--out', args.out), ('--plot', args.plot)):
        parser_check_out_file(parser, path, flag, 'output file', in_place=flag == '--out')
    parser_check_out_folder(parser, args.data_root, '--data-root')


@tool_main('benchmark')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the benchmark; ``prog``: the command's name as recorded
    (default: as this process was started, see :func:`~ipr_plugin.cli.invocation`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or invocation(sys.argv[0], 'ipr_plugin.benchmark')
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:  # before the synthetic set is written
        val_split = given_val_split(*args.val_data) if args.val_data else None
    except (OSError, ValueError) as error:
        parser.error(f'argument --val-data: {error}')
    try:  # a mistyped or broken config: one line now, not a worker's traceback after the synthetic set is written
        configs = [parse_config_arg(c) for c in (args.configs or default_configs())]
        for _, _, path in configs:
            load_config(path)
    except (OSError, ValueError) as error:
        parser.error(f'argument --configs: {error}')
    deadline = time.time() + args.time_limit if args.time_limit else None
    temp_root = tempfile.mkdtemp(prefix='ipr_benchmark_')
    held = contextlib.ExitStack()  # the synthetic set, until the measurements are done
    try:
        data_root = args.data_root or osp.join(temp_root, 'data')
        try:
            data = prepare_data(osp.abspath(data_root), args.num_images, args.num_val_images, args.seed, held)
        except FolderInUse as error:
            parser.error(f'argument --data-root: {error}')
        if val_split:
            data = dict(data, **val_split)
        runs: List[List[Dict[str, Any]]] = [[] for _ in configs]
        for round_index in range(args.rounds):
            skip = list(args.skip) if round_index == 0 else repeat_skip(args.skip)
            order = round_order(len(configs), round_index)
            for position, index in enumerate(order):
                name, _, path = configs[index]
                work_dir = osp.join(temp_root, f'{index}' + (f'-round{round_index + 1}' if round_index else ''))
                os.makedirs(work_dir)
                # each round shares the time left among its configs still to run
                spec = WorkerSpec(
                    name=name, config=osp.abspath(path), data=data, batch_size=args.batch_size,
                    workers=args.workers, warmup=args.warmup, iters=args.iters, device=args.device,
                    work_dir=work_dir, result_file=osp.join(work_dir, 'result.json'), skip=skip,
                    pipeline_samples=args.pipeline_samples, metric_images=args.metric_images,
                    cfg_options=dict(args.cfg_options), seed=args.seed,
                    deadline=config_deadline(deadline, len(order) - position))
                runs[index].append(run_config(spec))
        results = [dict(merge_rounds(config_runs), config=shown)
                   for config_runs, (_, shown, _) in zip(runs, configs)]
        settings = settings_lines(args, data)
        if args.plot and plot_pipelines(results, Path(args.plot)):
            settings.append(f'Plot of (d) and (e): `{args.plot}`')
        section = render_section(results, command_line(argv, prog), settings, args.label)
    finally:
        held.close()
        if args.keep_work_dir:
            print(f'[benchmark] work dir kept: {temp_root}', file=sys.stderr)
        else:
            shutil.rmtree(temp_root, ignore_errors=True)
    print(section)
    failed = any(r.get('errors') for r in results)
    if failed:  # the section names each failure; the numbers measured beside it are kept all the same
        print('[benchmark] some measurements failed: see the errors listed in the section', file=sys.stderr)
    if any(r.get('cut_off') for r in results):
        print(f'[benchmark] --time-limit {args.time_limit:g} s reached: the cells marked "cut off" were not '
              'measured', file=sys.stderr)
    if args.out:
        append_section(args.out, section)
        print(f'[benchmark] appended to {args.out}', file=sys.stderr)
    return 1 if failed else 0

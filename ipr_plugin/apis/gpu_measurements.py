"""The GPU measurements in one command, for a machine held for a fixed, short time.

Runs, in this order, each in its own process and each given a share of the time still left:

1. ``benchmark``: the benchmark (``python -m ipr_plugin.benchmark``, i.e. ``tools/benchmark.py``) with mmpose's
   IPR config (the anchor) against ours-fast at the recipe's batch of 64 per GPU, so that the peak memory it
   reports is the one the performance targets name;
2. ``study``: the accuracy study (``python -m ipr_plugin.apis.accuracy_study``) with 1000 iterations of batch 32 per
   row, the seven default rows (mmpose's IPR, DSNT and Debias; ours L1, JS and Debias; ours-JS with constant
   scores), ResNet-18 at 256x256, the six trained rows at once (``--parallel 6``, two loader workers each),
   evaluated at 500 and 1000 iterations (whether the AP still moves at the end of the budget). Run one after another
   they would not fit: on an H200 (2026-12-04) a row of ours took under 102 s from start to evaluation, 48 s of it
   training (0.024-0.032 s per iteration), and mmpose's IPR logged 0.107-0.232 s per iteration, bound by its loader
   and main process while the GPU idled;
3. ``metric``: the benchmark's rows (g) alone, the final COCO evaluation (twice) and the val dataset at COCO
   val2017 scale and the train dataset at train2017 scale, for both configs: CPU work in the main process,
   measured on the GPU machine's CPU, only when asked for (the benchmark part skips it, so that its minutes per
   config cannot cut the GPU windows short; a config gets half of the part's time: ask for it alone, with
   ``--seconds 540``);
4. ``compile``: the benchmark of the ``torch.compile`` fast config alone (compilation takes minutes before its
   first step), only when asked for.

Both tools honour ``--time-limit``: whatever finished is written, the rest is marked "cut off". Every part
writes under ``OUT``: ``benchmark.md``, ``study/BENCHMARKS.md`` with ``study/docs/`` (its plot),
``metric.md``, ``compile.md``; each holds the command, date and machine, ready to append to ``BENCHMARKS.md``.

Usage: ``python tools/gpu_measurements.py OUT [--seconds 540] [--parts benchmark study]``.
"""
import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..arguments import ToolHelpFormatter
from ..cli import invocation, tool_main
from ..paths import MMPOSE_IPR_CONFIG as MMPOSE_IPR
from ..paths import OURS_FAST_COMPILE_CONFIG as FAST_COMPILE
from ..paths import OURS_FAST_CONFIG as FAST
from ..paths import work_root
from ..processes import command_dying_with_this_process
from .mim_runner import stop_session

STUDY_VARIANTS = ('mmpose-IPR', 'mmpose-DSNT', 'mmpose-Debias', 'ours-L1', 'ours-JS', 'ours-Debias', 'ours-JS-ones')
STUDY_PARALLEL = 6  # every trained row of STUDY_VARIANTS at once
PARTS = ('benchmark', 'study', 'metric', 'compile')
# Share of the time left that each part may use (the last part asked for takes all that is left), and the
# most it needs. On an H200 (2026-12-04) the benchmark ran out of 270 s before ours' Runner measurements, with
# about 140 s of it spent in mmpose's two waiting out their 14 loader workers' shutdown (5 s each, as measured
# on the CPU), which the benchmark no longer does: 220 s leaves a margin for both configs.
SHARE = dict(benchmark=0.45, study=0.6, metric=1.0, compile=1.0)
MOST = dict(benchmark=220.0, study=900.0, metric=600.0, compile=420.0)
REPORT_MARGIN = 20.0  # seconds kept back from each part's limit for writing its report and exiting
# the tools as modules: installed from a wheel, there is no tools/ folder
BENCHMARK = ('-m', 'ipr_plugin.benchmark')
STUDY = ('-m', 'ipr_plugin.apis.accuracy_study')


def part_command(part: str, out: Path, limit: float) -> List[str]:
    """argv (without the interpreter) of one part, its output under ``out``, limited to ``limit`` seconds."""
    time_limit = ['--time-limit', f'{limit:.0f}']
    if part == 'benchmark':
        return [*BENCHMARK, '--batch-size', '64', '--configs', f'mmpose-IPR={MMPOSE_IPR}',
                f'ours-fast={FAST}', '--skip', 'metric', '--out', str(out / 'benchmark.md'),
                '--label', 'batch 64'] + time_limit
    if part == 'metric':  # no image is timed: the smallest data set-up the benchmark accepts, in a folder of its
        # own (the other parts' set is reused only when written with their sizes: rewriting it costs minutes)
        return [*BENCHMARK, '--batch-size', '64', '--num-images', '8', '--num-val-images', '4',
                '--data-root', str(out / 'metric_data'),
                '--skip', 'train', 'loader', 'eval', 'pipeline', 'test_pipeline', 'host',
                '--configs', f'mmpose-IPR={MMPOSE_IPR}', f'ours-fast={FAST}', '--out', str(out / 'metric.md'),
                '--label', 'the final COCO evaluation at COCO val2017 scale'] + time_limit
    if part == 'study':
        return [*STUDY, '--iters', '1000', '--batch-size', '32', '--variants', *STUDY_VARIANTS,
                '--parallel', str(STUDY_PARALLEL), '--curve-points', '2', '--out', str(out / 'study')] + time_limit
    if part == 'compile':
        return [*BENCHMARK, '--batch-size', '64', '--configs', f'ours-fast-compile={FAST_COMPILE}',
                '--out', str(out / 'compile.md'), '--label', 'batch 64, torch.compile'] + time_limit
    raise ValueError(f'unknown part {part!r}; choose from {PARTS}')


def part_limit(part: str, left: float, last: bool) -> float:
    """Seconds ``part`` may run when ``left`` remain: its share (all of it when last), at most what it needs."""
    share = left if last else left * SHARE[part]
    return max(0.0, min(MOST[part], share) - REPORT_MARGIN)


def run_parts(out: Path, seconds: float, parts: Sequence[str], python: str = sys.executable,
              say=print) -> Dict[str, Tuple[str, Optional[int]]]:
    """Run ``parts`` in order within ``seconds``; returns each part's state and exit status."""
    for part in parts:
        if part not in PARTS:
            raise ValueError(f'unknown part {part!r}; choose from {PARTS}')
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    done: Dict[str, Tuple[str, Optional[int]]] = {}
    for i, part in enumerate(parts):
        left = seconds - (time.monotonic() - start)
        limit = part_limit(part, left, last=i == len(parts) - 1)
        if limit < 60:  # less than a minute cannot finish even the data set-up of either tool
            say(f'[gpu] {part}: not started, {left:.0f} s left')
            done[part] = ('not started', None)
            continue
        argv = part_command(part, out, limit)
        say(f'[gpu] {part}: {limit:.0f} s allowed: python ' + ' '.join(argv))
        # the tool stops itself at --time-limit; the margin is its time to write and exit. Past it, SIGTERM lets
        # it kill the sessions of its own children (the benchmark's worker, the study's trainings), which a
        # SIGKILL of the tool alone would leave running on the GPU.
        # SIGTERM too when this process is SIGKILLed, which gives it no time to stop the part itself
        proc = subprocess.Popen(command_dying_with_this_process([python, *argv], signal.SIGTERM), cwd=work_root(),
                                start_new_session=True)
        try:
            rc = proc.wait(limit + REPORT_MARGIN)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            stop_session(proc)
        done[part] = ('finished' if rc == 0 else 'killed at its limit' if rc is None else f'failed (exit {rc})', rc)
        say(f'[gpu] {part}: {done[part][0]} after {time.monotonic() - start:.0f} s in all')
    return done


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=ToolHelpFormatter)
    p.add_argument('out', help='folder receiving every part\'s markdown (and the study\'s plot)')
    p.add_argument('--seconds', type=float, default=540.0, help='time for all parts together, reports included')
    p.add_argument('--parts', nargs='+', choices=PARTS, default=['benchmark', 'study'],
                   help='what to run, in this order')
    return p


@tool_main('gpu_measurements')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = build_parser(prog or invocation(sys.argv[0], 'ipr_plugin.apis.gpu_measurements'))
    args = parser.parse_args(argv)
    if not args.seconds > 0:  # else every part is skipped for want of time, after the GPU machine was started
        parser.error(f'argument --seconds: must be a number > 0, got {args.seconds}')
    import torch
    if not torch.cuda.is_available():
        raise SystemExit('gpu_measurements: torch sees no CUDA device here; these figures are GPU figures')
    from ..datasets.transforms.jpeg import fast_jpeg_available, jpeg_decoder
    if not fast_jpeg_available():  # measured anyway, and the reports' machine line says which decoder ran
        print(f'[gpu] WARNING: JPEG decode is {jpeg_decoder()}: the fast config\'s loader runs slower than it '
              'would with `pip install simplejpeg`', file=sys.stderr)
    from ..datasets.transforms.jpeg_region import region_decoder, region_decoding_available
    if not region_decoding_available():
        print(f'[gpu] WARNING: region decoding of training crops: {region_decoder()}; where it is not built: '
              '`python setup.py build_ext --inplace` (needs libjpeg-turbo >= 1.5 headers)', file=sys.stderr)
    done = run_parts(Path(args.out).resolve(), args.seconds, args.parts)
    return 0 if all(rc == 0 for _, rc in done.values()) else 1


if __name__ == '__main__':
    sys.exit(main())

"""Draw a run's training curves (loss terms, learning rate, training accuracy, validation metrics) from the logs
mmengine writes, and print a summary: the best validation score and when, where a loss turned non-finite.

Reads every ``<timestamp>/vis_data/scalars.json`` of a work dir (one per start, written by mmengine's
``LocalVisBackend``: a resumed run continues the curves from the checkpoint it resumed from; a start whose config
says ``resume = False`` begins a new run, drawn alone), or one run folder or file. What it leaves out is named
under "not read" (an earlier run, a start logged without a ``LocalVisBackend``, a validation run). Several paths
draw their runs in the same panels, a colour per run, to compare them. mmpose's ``analyze_logs.py`` cannot draw
validation metrics from these logs.

Example::

    python tools/plot_training.py work_dirs/ipr_res50_8xb64-210e_coco-256x256
    python tools/plot_training.py WORK_DIR --out curves.svg --metrics coco/AP "coco/AP .5"
    python tools/plot_training.py WORK_DIR_A WORK_DIR_B --labels l1 joint --out compare.png
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

from ..apis.training_curves import plot_curves, read_curves, run_labels, summarize
from ..arguments import ToolHelpFormatter, exit_on_input_errors, parser_check_out_file
from . import tool_main

FORMATS = ('.png', '.svg', '.pdf')


def parse_args(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=ToolHelpFormatter)
    parser.add_argument('paths', nargs='+', metavar='path',
                        help="a work dir, one run's <timestamp> folder, or a scalars.json file; several to compare")
    parser.add_argument('--out', default=None, help='the picture (.png, .svg or .pdf; default: training_curves.png '
                        'in the work dir; needed for several paths)')
    parser.add_argument('--metrics', nargs='+', default=None, metavar='KEY',
                        help="validation keys to draw (default: every '.../AP' and '.../AR')")
    parser.add_argument('--labels', nargs='+', default=None, metavar='NAME',
                        help="a name per path for the legend (default: each work dir's name)")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.paths):
        parser.error(f'argument --labels: {len(args.labels)} names for {len(args.paths)} paths')
    if args.labels is not None and len(set(args.labels)) < len(args.labels):
        parser.error(f'argument --labels: {args.labels} name two runs alike')
    if args.out is None:
        if len(args.paths) > 1:
            parser.error('argument --out: needed to compare several paths (which work dir would it go to?)')
        path = args.paths[0]
        args.out = osp.join(path if osp.isdir(path) else osp.dirname(osp.abspath(path)), 'training_curves.png')
    if osp.splitext(args.out)[1].lower() not in FORMATS:
        parser.error(f"argument --out: {args.out} is not a {', '.join(FORMATS)} file")
    parser_check_out_file(parser, args.out, what='picture')
    return args


@tool_main('plot_training')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    args = parse_args(argv, prog)
    with exit_on_input_errors('plot_training'):
        runs = [read_curves(path) for path in args.paths]
        labels = args.labels or run_labels(runs)
        out = plot_curves(runs, args.out, args.metrics, labels)
    for label, curves in zip(labels, runs):
        if len(runs) > 1:
            print(f'{label} ({curves.source}):')
        for line in summarize(curves):
            print(('  ' if len(runs) > 1 else '') + line)
    print(f'picture: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

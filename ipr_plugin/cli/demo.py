"""The README's main job: synthetic data -> untrained AP -> `mim train` (on the GPU where there is one) -> trained
AP -> pictures.

Usage: python tools/demo.py [--epochs N] [--num-train N] [--work-dir DIR]   (or simply `make demo`)
"""
import argparse
import sys
from typing import Optional, Sequence

from ..apis.demo import DEFAULT_DATA_ROOT, DEFAULT_WORK_DIR, demo_argument_problems, run_demo
from ..arguments import ToolHelpFormatter, parser_check_out_folder, parser_error
from ..locks import FolderInUse
from . import tool_main


@tool_main('demo')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=ToolHelpFormatter)
    parser.add_argument('--work-dir', default=str(DEFAULT_WORK_DIR), help='checkpoints, logs, pictures and the '
                        'results (default: work_dirs/demo in the checkout, or in the current folder when installed '
                        'from a wheel)')
    parser.add_argument('--data-root', default=str(DEFAULT_DATA_ROOT), help='where the synthetic set is written, or '
                        'reused when written there with the same settings (default: data/synthetic in the checkout, '
                        'or in the current folder when installed from a wheel)')
    parser.add_argument('--num-train', type=int, default=300, help='synthetic training images')
    parser.add_argument('--num-val', type=int, default=40, help='synthetic val images')
    parser.add_argument('--epochs', type=int, default=None, help="default: the config's")
    parser.add_argument('--seed', type=int, default=0, help='of the synthetic set, the weights and the training')
    args = parser.parse_args(argv)
    parser_error(parser, demo_argument_problems(args.num_train, args.num_val, args.epochs))
    for flag, folder in (('--work-dir', args.work_dir), ('--data-root', args.data_root)):
        parser_check_out_folder(parser, folder, flag)
    try:
        run_demo(work_dir=args.work_dir, data_root=args.data_root, num_train=args.num_train, num_val=args.num_val,
                 epochs=args.epochs, seed=args.seed)
    except FolderInUse as error:
        parser.exit(2, f'{parser.prog}: {error}\n')


if __name__ == '__main__':
    sys.exit(main())

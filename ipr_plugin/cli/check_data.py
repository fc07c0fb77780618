"""Check a config's data before a long run: builds each split's dataset, loads every image once.

Lists every missing or unreadable image and (with ``IPRCocoDataset``) every image whose size differs from its
annotation file's, instead of stopping at the first one mid-training; notes JPEGs that load turned by their EXIF
orientation. Exit status 1 when there is a problem (notes do not count), or when the config has no dataloader of
the splits asked for (a file that is not a config of a model's data: nothing would be checked).

Example::

    python tools/check_data.py configs/ipr_res50_8xb64-210e_coco-256x256.py --workers 8
    python tools/check_data.py CONFIG --splits val --cfg-options val_dataloader.dataset.data_root=data/coco/
"""
import argparse
import sys
from typing import Optional, Sequence

from ..apis.data_check import SPLITS, check_data, data_files, format_report, report_json
from ..arguments import (ToolHelpFormatter, add_cfg_options, check_out_file, exit_on_input_errors,
                         parser_check_out_file, write_json)
from ..paths import installed_config
from . import tool_main


def parse_args(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=ToolHelpFormatter)
    parser.add_argument('config', help='config file, or package::path of an installed one')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS), help='the dataloaders to check')
    parser.add_argument('--workers', type=int, default=0,
                        help='processes loading images (0: this one; then an image that kills its loader ends '
                        'the check)')
    parser.add_argument('--out', default=None, help='also write the report as JSON here (every problem)')
    parser.add_argument('--max-listed', type=int, default=50, metavar='N',
                        help='list at most N problems (and notes) per split, then how many more (0: all; default 50)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f'--workers must be 0 or more, got {args.workers}')
    if args.max_listed < 0:
        parser.error(f'--max-listed must be 0 (all) or more, got {args.max_listed}')
    parser_check_out_file(parser, args.out, what='report file')
    return args


@tool_main('check_data')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    args = parse_args(argv, prog)
    with exit_on_input_errors('check_data'):  # a missing config: the problems inside it are the report's
        # before the check, not after it: the config or a file it names given as --out would be replaced
        # the config is read twice with --out (a fraction of a second): check_data names it as the user did
        inputs = [installed_config(args.config), *data_files(args.config, args.cfg_options)] if args.out else []
        check_out_file(args.out, 'report file', inputs=inputs)
        report = check_data(args.config, args.splits, args.workers, args.cfg_options, progress=not args.no_progress)
    text = format_report(report, max_listed=args.max_listed)
    print(text)
    if args.out:
        with exit_on_input_errors('check_data'):  # a disk that filled up during the check: one line
            write_json(args.out, report_json(report), indent=1)
        print(f'every problem and note: {args.out}')
    elif 'not listed' in text:
        print('(--max-listed 0 lists every one, --out FILE writes them all to a JSON file)')
    return 1 if report['problems'] else 0


if __name__ == '__main__':
    sys.exit(main())

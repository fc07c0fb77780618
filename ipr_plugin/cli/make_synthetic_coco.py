"""Write the synthetic COCO-format person-keypoint dataset (see ``ipr_plugin.datasets.synthetic_coco``).

Example::

    python tools/make_synthetic_coco.py --out data/synthetic --num-train 64 --num-val 16 --seed 0
"""
import argparse
import os
import sys
import time
from typing import Optional, Sequence

from ..arguments import ToolHelpFormatter, exit_on_input_errors, parser_check_out_folder, parser_error
from ..datasets.synthetic_coco import (DIFFICULTIES, MIN_IMAGE_SIDE, PARALLEL_MIN_IMAGES, argument_problems,
                                       write_synthetic_coco)
from ..datasets.synthetic_sets import writing_set
from ..locks import FolderInUse
from ..paths import work_root
from . import tool_main


def parse_args(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=ToolHelpFormatter)
    parser.add_argument('--out', default=str(work_root() / 'data' / 'synthetic'),
                        help="dataset root to write (default: data/synthetic in the checkout, or in the current "
                        "folder when installed from a wheel; make demo writes its own set there, 300 + 40 images "
                        "at 320x240, replacing this one's)")
    parser.add_argument('--num-train', type=int, default=64, help='train images (0: a set to evaluate on only)')
    parser.add_argument('--num-val', type=int, default=16, help='val images (with detector boxes; 0: none)')
    parser.add_argument('--seed', type=int, default=0, help='the same seed writes the same files')
    parser.add_argument('--difficulty', choices=sorted(DIFFICULTIES), default='normal',
                        help='hard: more, smaller, occluded and truncated people, noisier detector boxes')
    parser.add_argument('--image-size', type=int, nargs=2, default=(640, 480), metavar=('WIDTH', 'HEIGHT'),
                        help=f'pixels, at least {MIN_IMAGE_SIDE} each')
    parser.add_argument('--people-per-image', type=int, nargs=2, default=None, metavar=('MIN', 'MAX'),
                        help="default: the difficulty's")
    parser.add_argument('--jpeg-quality', type=int, default=90, help='1-100')
    parser.add_argument('--workers', type=int, default=None,
                        help=f'rendering processes (default: every core for {PARALLEL_MIN_IMAGES} images or more, '
                        'else 1); the files are the same for any number')
    args = parser.parse_args(argv)
    # naming the flag rather than the API argument
    problems = argument_problems(args.num_train, args.num_val, args.image_size, args.people_per_image,
                                 args.jpeg_quality, args.workers)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        problems['out'] = f'{args.out} is a file, not a folder to write the set into'
    parser_error(parser, problems)
    parser_check_out_folder(parser, args.out, '--out')
    return args


@tool_main('make_synthetic_coco')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> None:
    args = parse_args(argv, prog)
    start = time.perf_counter()
    try:
        # a file in the way of the folder (--out README.md), an unwritable folder: one line, not a traceback
        with exit_on_input_errors('make_synthetic_coco'), writing_set(args.out):  # not under a run that uses it
            out = write_synthetic_coco(args.out, num_train=args.num_train, num_val=args.num_val,
                                       image_size=tuple(args.image_size), people_per_image=args.people_per_image,
                                       seed=args.seed, difficulty=args.difficulty, jpeg_quality=args.jpeg_quality,
                                       workers=args.workers)
    except FolderInUse as error:
        sys.exit(f'{prog or os.path.basename(sys.argv[0])}: argument --out: {error}')
    seconds = time.perf_counter() - start
    print(f'wrote a {args.difficulty} synthetic COCO keypoint set (seed {args.seed}) to {out["root"]} '
          f'in {seconds:.1f} s:')
    for split in ('train', 'val'):
        print(f'  {split}: {out[f"num_{split}_images"]} images in {out[f"{split}_img_dir"]}, '
              f'{out[f"num_{split}_instances"]} people in {out[f"{split}_ann_file"]}')
    print(f'  detections: {out["num_detections"]} boxes in {out["bbox_file"]}')
    for split, flag in (('train', '--num-train'), ('val', '--num-val')):
        if not out[f'num_{split}_images']:  # a training or validation on it stops at its first step
            print(f'  note: no {split} images ({flag} 0): mmengine cannot {"train" if split == "train" else "validate"}'
                  ' on this set')


if __name__ == '__main__':
    sys.exit(main())

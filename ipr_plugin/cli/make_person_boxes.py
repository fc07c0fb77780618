"""Write mmpose's person ``bbox_file`` for a COCO annotation file with an mmdet detector.

Output: a JSON list ``[{"image_id", "category_id": 1, "bbox": [x, y, w, h], "score"}, ...]`` to use as
``val_dataloader.dataset.bbox_file`` (see ``ipr_plugin.apis.person_boxes``). Unreadable images are reported
on stderr and skipped; the summary line counts them. When not one image can be read, or not one person box
reaches ``--score-thr`` (mmpose's dataset would refuse the file), nothing is written and the tool fails.

Example, RTMDet-m from mmdet's model zoo (COCO box AP 49.1) on COCO val2017 (``mmdet::`` names resolve to
the configs installed with mmdet; mmengine downloads and caches the checkpoint URL)::

    python tools/make_person_boxes.py mmdet::rtmdet/rtmdet_m_8xb32-300e_coco.py \\
        https://download.openmmlab.com/mmdetection/v3.0/rtmdet/rtmdet_m_8xb32-300e_coco/rtmdet_m_8xb32-300e_coco_20220719_112220-229f527c.pth \\
        --ann-file data/coco/annotations/person_keypoints_val2017.json --img-dir data/coco/val2017 \\
        --out data/coco/person_detection_results/rtmdet_m_val2017.json --score-thr 0.3 --device cuda:0

Or fetch config and checkpoint first (offline machines, Faster R-CNN R50-FPN here)::

    mim download mmdet --config faster-rcnn_r50_fpn_1x_coco --dest checkpoints
    python tools/make_person_boxes.py checkpoints/faster-rcnn_r50_fpn_1x_coco.py \\
        checkpoints/faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth --ann-file ... --img-dir ... --out ...

A lower ``--score-thr`` keeps more boxes; the dataset can still drop them later with
``filter_cfg=dict(bbox_score_thr=...)``.
"""
import argparse
import logging
import sys
from typing import Optional, Sequence

from ..arguments import ToolHelpFormatter, add_cfg_options, exit_on_input_errors, parser_check_out_file, parser_error
from ..apis.person_boxes import NothingDetected, argument_problems, format_summary, make_person_boxes
from . import tool_main


def parse_args(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=ToolHelpFormatter)
    parser.add_argument('det_config', help='mmdet config file or mmdet::name')
    parser.add_argument('det_checkpoint', help="checkpoint path or URL; 'none' for random weights")
    parser.add_argument('--ann-file', required=True, help='COCO annotation file listing the images')
    parser.add_argument('--img-dir', required=True, help="folder the images' file_name are relative to")
    parser.add_argument('--out', required=True, help='JSON file to write')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='keep person boxes with score >= this, in [0, 1]')
    parser.add_argument('--device', default='cpu', help="e.g. 'cpu' or 'cuda:0'")
    parser.add_argument('--person-class', default=None,
                        help="person label index or class name (default: 'person' in the detector's classes)")
    parser.add_argument('--max-images', type=int, default=None, help='only the first N (>= 1) images')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_cfg_options(parser, 'detector config overrides')
    args = parser.parse_args(argv)
    # before the detector is built, and naming the flag rather than the API argument
    parser_error(parser, argument_problems(args.score_thr, args.max_images, args.device))
    parser_check_out_file(parser, args.out, inputs=[args.ann_file, args.det_config, args.det_checkpoint])
    return args


@tool_main('make_person_boxes')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> None:
    from tqdm.contrib.logging import logging_redirect_tqdm

    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s: %(message)s')
    person_class = args.person_class
    if person_class is not None and person_class.lstrip('-').isdigit():  # '-1' too: an index out of range, not a name
        person_class = int(person_class)
    checkpoint = None if args.det_checkpoint.lower() == 'none' else args.det_checkpoint
    # warnings print between progress-bar updates, not inside them
    with logging_redirect_tqdm(), exit_on_input_errors('make_person_boxes'):
        try:
            stats = make_person_boxes(args.det_config, checkpoint, args.ann_file, args.img_dir, args.out,
                                      score_thr=args.score_thr, device=args.device, person_class=person_class,
                                      cfg_options=args.cfg_options, max_images=args.max_images,
                                      progress=not args.no_progress)
        except NothingDetected as error:  # the run's outcome, which the message explains: no traceback
            sys.exit(f'make_person_boxes: {error}')
    print(format_summary(stats))


if __name__ == '__main__':
    sys.exit(main())

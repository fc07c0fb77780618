"""Which keypoints keep their map's mass out of the peak: the background share by visibility and person size.

The debias correction (Gu et al., ICCV 2021) is exact only while the peak holds most of a map's mass, i.e. while
the background share ``r`` (:func:`ipr_plugin.ops.background_share`) stays under the head's cap
(``debias_max_background``); above it the correction multiplies uncertain offsets by up to ``1 / (1 - cap)``.
Training logs ``r`` and the capped share over all labelled keypoints (``debias_r``, ``debias_capped``). This
module splits them by what a keypoint is: labelled visible (v=2) or occluded (v=1), on a small, medium or large
person (COCO's area ranges). It runs a trained IPR model over the ground-truth person boxes of a COCO-layout
split, without flip test, and reads ``r`` off the logits of every labelled keypoint. People whose box is
non-finite or has no width or height (or whose area is non-finite or negative) cannot be cropped or binned: they
are left out, and the report counts them with their ids.

Usage: ``python tools/background_share.py CONFIG CHECKPOINT --ann-file ANN --img-dir DIR``.
"""
import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..arguments import (ToolHelpFormatter, device_problems, exit_on_input_errors, is_url, load_coco_file,
                         parser_check_out_file, parser_error, write_json)
from ..cli import invocation, tool_main
from ..datasets.body.coco_checks import without_keypoints
from ..markdown import markdown_table
from ..ops.integral import BACKGROUNDS
from ..paths import installed_config, link_note
from ..progress import progress_bar

# COCO's area ranges (pixels^2), as its evaluation names them
AREA_RANGES = (('small', 0.0, 32.0 ** 2), ('medium', 32.0 ** 2, 96.0 ** 2), ('large', 96.0 ** 2, math.inf))
VISIBILITIES = (('visible (v=2)', (2, )), ('occluded (v=1)', (1, )), ('all labelled', (1, 2)))


def share_table(shares: np.ndarray, visibility: np.ndarray, areas: np.ndarray, cap: float) -> List[Dict[str, Any]]:
    """Background share statistics per (visibility, person size) group, totals included.

    Args:
        shares: (M,) background share ``r`` of each labelled keypoint.
        visibility: (M,) its COCO visibility flag (1 or 2).
        areas: (M,) its person's annotated area, pixels^2.
        cap: the head's ``debias_max_background``: a keypoint above it is "capped".

    Returns:
        list of dicts (``visibility``, ``size``, ``count``, ``mean_r``, ``median_r``, ``capped``: the fraction
        above ``cap``); statistics are None for an empty group. Sizes run small, medium, large, ``all``.
    """
    shares, visibility, areas = (np.asarray(a, dtype=np.float64) for a in (shares, visibility, areas))
    if not shares.shape == visibility.shape == areas.shape or shares.ndim != 1:
        raise ValueError(f'shares, visibility and areas must be (M,) arrays of one length, got {shares.shape}, '
                         f'{visibility.shape}, {areas.shape}')
    rows = []
    for vis_name, flags in VISIBILITIES:
        in_vis = np.isin(visibility, flags)
        for size_name, low, high in (*AREA_RANGES, ('all', -math.inf, math.inf)):
            r = shares[in_vis & (areas >= low) & (areas < high)]
            rows.append(dict(visibility=vis_name, size=size_name, count=int(r.size),
                             mean_r=float(r.mean()) if r.size else None,
                             median_r=float(np.median(r)) if r.size else None,
                             capped=float((r > cap).mean()) if r.size else None))
    return rows


def share_markdown(rows: Sequence[Dict[str, Any]], cap: float) -> str:
    """``share_table``'s rows as a markdown table."""
    def cell(value: Optional[float], fmt: str) -> str:
        return '' if value is None else format(value, fmt)

    header = ('keypoints', 'person size', 'count', 'mean r', 'median r', f'above the cap of {cap:g}')
    return markdown_table(header, [(r['visibility'], r['size'], r['count'], cell(r['mean_r'], '.3f'),
                                      cell(r['median_r'], '.3f'), cell(r['capped'], '.1%')) for r in rows])


def _person_area(ann: Dict[str, Any]) -> Any:
    """The area that picks a person's size group: COCO's (the mask's), else the box's."""
    return ann.get('area', ann['bbox'][2] * ann['bbox'][3])


def _usable_box(ann: Dict[str, Any]) -> bool:
    """Whether a person's box (and the area that picks its size group) can be cropped and binned: a box of
    non-finite or non-positive size would make mmpose's crop (and so every share of that person) meaningless."""
    w, h = ann['bbox'][2:]
    area = _person_area(ann)
    return (isinstance(area, (int, float)) and bool(np.isfinite([*ann['bbox'], area]).all())
            and w > 0 and h > 0 and area >= 0)


def _labelled_people(coco: Dict[str, Any], ann_file: str,
                     num_keypoints: int) -> Tuple[Dict[str, List[Dict[str, Any]]], List[Any]]:
    """Non-crowd annotations with at least one labelled keypoint of ``coco`` (``ann_file`` loaded by
    :func:`load_coco_file`, so every record has the ids and file names read here), by image file name, and the
    ids of those skipped for an unusable box (:func:`_usable_box`); checks the keypoint count and the box format."""
    people = defaultdict(list)
    skipped = []
    for ann in coco.get('annotations') or []:
        if without_keypoints(ann):
            continue  # as the dataset drops it
        if len(ann.get('keypoints', ())) != 3 * num_keypoints:
            raise ValueError(f'{ann_file}: annotation {ann.get("id")} has {len(ann.get("keypoints", ())) // 3} '
                             f'keypoints, the model predicts {num_keypoints}')
        if ann.get('iscrowd', 0) or not any(v > 0 for v in ann['keypoints'][2::3]):
            continue
        bbox = ann.get('bbox')
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise ValueError(f'{ann_file}: annotation {ann.get("id")} has bbox {bbox!r}, not [x, y, w, h] numbers')
        if _usable_box(ann):
            people[ann['image_id']].append(ann)
        else:
            skipped.append(ann.get('id'))
    files = {img['id']: img['file_name'] for img in coco.get('images', [])}
    missing = sorted(set(people) - set(files))
    if missing:
        raise ValueError(f'{ann_file}: annotations refer to images not listed in it: {missing[:5]}')
    return {files[i]: anns for i, anns in people.items()}, skipped


def keypoint_shares(config: str, checkpoint: Optional[str], ann_file: str, img_dir: str, device: str = 'cpu',
                    background: Optional[str] = None, progress: bool = False) -> Dict[str, Any]:
    """Run the model over the split's ground-truth boxes and return every labelled keypoint's share.

    Args:
        config: an IPR model config (``model.head.type == 'IPRHead'``).
        checkpoint: its weights (None: the config's initial weights).
        ann_file: COCO keypoint annotations of the split.
        img_dir: folder of the split's images.
        device: torch device.
        background: the background level ``r`` is measured against (``'zero'`` or ``'median'``, see
            :func:`ipr_plugin.ops.background_share`); default: the head's ``debias_background``.
        progress: show a progress bar on stderr.

    Returns:
        dict with ``shares``, ``visibility``, ``areas`` ((M,) arrays over labelled keypoints), ``cap``, ``beta``,
        ``background`` (the head's debias settings), ``num_people`` (measured) and ``skipped_ids`` (annotation ids
        of the labelled people left out for a non-finite or non-positive box or area).

    Raises:
        FileNotFoundError: an input or a listed image is missing.
        ValueError: ``ann_file`` is not JSON or not a COCO annotation file, or a record lacks a key read here
            (:func:`load_coco_file`); ``checkpoint`` is not a PyTorch checkpoint or not one of ``config``; an
            annotation has another keypoint count than the model or a malformed bbox; an image cannot be read.
    """
    import torch
    from mmpose.apis import inference_topdown

    from ..ops import background_share
    from .checkpoint_check import init_checked_model
    for path in (installed_config(str(config)), checkpoint, ann_file, img_dir):
        if path is not None and not is_url(path) and not Path(path).exists():
            raise FileNotFoundError(f'background_share: no such file or folder: {path}{link_note(path)}')
    coco = load_coco_file(ann_file)  # before the model: a wrong file fails in a second, naming its first bad record
    model = init_checked_model(config, checkpoint, device, dict(model=dict(test_cfg=dict(flip_test=False))))
    head = model.head
    if type(head).__name__ != 'IPRHead':
        raise ValueError(f'background_share: {config} has a {type(head).__name__}, not an IPRHead')
    captured: List[torch.Tensor] = []
    logits_of = head.logits

    def keep_logits(feats):  # the head's own logits, as the prediction computes them
        out = logits_of(feats)
        captured.append(out.detach().float())
        return out

    head.logits = keep_logits
    background = background or head.debias_background
    people, skipped = _labelled_people(coco, ann_file, head.num_joints)
    shares, visibility, areas = [], [], []
    with torch.no_grad():
        for file_name, anns in progress_bar(sorted(people.items()), desc='background share', unit='img',
                                            disable=not progress):
            image = Path(img_dir) / file_name
            if not image.is_file():
                raise FileNotFoundError(f'background_share: image {image} (listed in {ann_file}) is missing')
            boxes = np.array([a['bbox'] for a in anns], dtype=np.float32).reshape(-1, 4)
            captured.clear()
            try:
                inference_topdown(model, str(image), bboxes=boxes, bbox_format='xywh')
            except Exception as err:
                # a corrupt image fails deep in the pipeline: named (one line on the command line); any other error
                # (out of memory, the model's) keeps its traceback. Decoded again only here, not for every image.
                problem = _undecodable(image)
                if problem:
                    raise ValueError(f'background_share: image {image} {problem}') from err
                raise
            r = background_share(torch.cat(captured), head.beta, background).cpu().numpy()
            for ann, r_person in zip(anns, r):
                flags = np.asarray(ann['keypoints'][2::3])
                labelled = flags > 0
                shares.append(r_person[labelled])
                visibility.append(flags[labelled])
                areas.append(np.full(labelled.sum(), float(_person_area(ann))))
    concat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
    return dict(shares=concat(shares), visibility=concat(visibility), areas=concat(areas),
                cap=head.debias_max_background, beta=float(head.beta), background=background,
                num_people=sum(len(a) for a in people.values()), skipped_ids=skipped)


def _undecodable(image: Path) -> Optional[str]:
    """Why ``image`` cannot be decoded as an image, or None where it can."""
    import mmcv
    try:
        return None if mmcv.imread(str(image)) is not None else 'cannot be read as an image'
    except Exception as err:  # noqa: BLE001 - cv2 raises on some bytes rather than returning None
        return f'cannot be read: {type(err).__name__}: {err}'


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=ToolHelpFormatter)
    p.add_argument('config', help='IPR model config')
    p.add_argument('checkpoint', help='trained weights')
    p.add_argument('--ann-file', required=True, help='COCO keypoint annotations of the split')
    p.add_argument('--img-dir', required=True, help="folder of the split's images")
    p.add_argument('--device', default='cpu', help='where the model runs (cpu, cuda, cuda:1, ...)')
    p.add_argument('--background', choices=BACKGROUNDS, help="background level r is measured against (default: "
                   "the head's debias_background; 'median' makes r depend on the maps' shape alone)")
    p.add_argument('--out', help='also write the table and settings to this JSON file')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


@tool_main('background_share')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = build_parser(prog or invocation(sys.argv[0], 'ipr_plugin.apis.background_share'))
    args = parser.parse_args(argv)
    parser_error(parser, device_problems(args.device))
    parser_check_out_file(parser, args.out, inputs=[args.config, args.checkpoint, args.ann_file])
    with exit_on_input_errors('background_share'):
        found = keypoint_shares(args.config, args.checkpoint, args.ann_file, args.img_dir, args.device,
                                args.background, progress=not args.no_progress)
    rows = share_table(found['shares'], found['visibility'], found['areas'], found['cap'])
    print(f'{found["num_people"]} people, {found["shares"].size} labelled keypoints; softmax beta '
          f'{found["beta"]:g}, background level {found["background"]!r}')
    skipped = found['skipped_ids']
    if skipped:
        print(f'{len(skipped)} labelled people skipped for a non-finite or non-positive box or area '
              f'(annotation ids {", ".join(map(str, skipped[:10]))}{", ..." if len(skipped) > 10 else ""})')
    print(share_markdown(rows, found['cap']))
    if args.out:
        settings = {k: found[k] for k in ('cap', 'beta', 'background', 'num_people', 'skipped_ids')}
        with exit_on_input_errors('background_share'):  # a disk that filled up meanwhile: one line
            write_json(args.out, dict(settings, config=args.config, checkpoint=args.checkpoint, rows=rows),
                       indent=1)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

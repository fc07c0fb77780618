"""Draw a pose model's predictions (skeletons on images) with mmpose's own visualizer."""
import os.path as osp
from collections import defaultdict
from pathlib import Path
from typing import DefaultDict, List, Optional, Set, Tuple, Union

import numpy as np

from ..arguments import load_coco_file, load_detection_file
from ..datasets.body.coco_checks import detection_message, detection_problem


def draw_predictions(config: Union[str, Path],
                     checkpoint: Optional[str],
                     ann_file: Union[str, Path],
                     img_dir: Union[str, Path],
                     bbox_file: Union[str, Path],
                     out_dir: Union[str, Path],
                     num_images: int = 4,
                     bbox_thr: float = 0.3,
                     kpt_thr: float = 0.0,
                     device: str = 'cpu') -> List[str]:
    """Run top-down inference on the first ``num_images`` images of a COCO annotation file, with the person
    boxes of ``bbox_file`` (``category_id`` 1, score >= ``bbox_thr``, as the dataset keeps them), and save each
    image with all predicted skeletons drawn.

    ``kpt_thr`` defaults to 0 (every predicted keypoint is drawn): IPRHead's score is the probability mass
    within a few heatmap cells of the prediction, so a correct keypoint of a broad map can score well under
    mmpose's usual 0.3, and a user looking at a briefly trained model wants to see all of its guesses.

    Each picture is named after its image's file name without folders (``a/b/c.png`` -> ``out_dir/c.jpg``; an
    absolute or ``../`` file name must not lead outside ``out_dir``), with ``_<image id>`` added when two images
    would share a name. A picture that would replace one of the images drawn is refused before anything is
    drawn.

    Returns:
        list[str]: the written image paths.

    Raises:
        ValueError: ``num_images`` is not positive; a file is not JSON, ``ann_file`` no COCO annotation file, an
            entry of ``bbox_file`` is not a person box the dataset could use (named, as the dataset names it); or
            no person box reaches ``bbox_thr`` on the images to draw (nothing would be drawn).
    """
    import mmcv
    from mmpose.apis import inference_topdown
    from mmpose.registry import VISUALIZERS
    from mmpose.structures import merge_data_samples

    from .checkpoint_check import init_checked_model

    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f'draw_predictions: num_images must be a positive number of images, got {num_images!r}')
    listed = load_coco_file(str(ann_file))['images']  # every image: ids, file names and sizes are read
    images = listed[:num_images]
    boxes = _person_boxes(bbox_file, {image['id'] for image in listed}, str(ann_file))
    drawn = [image for image in images if any(score >= bbox_thr for score, _ in boxes[image['id']])]
    if not drawn:  # an empty list would read as "drawn, nothing to see"
        scores = [score for image in images for score, _ in boxes[image['id']]]
        why = (f'the highest score there is {max(scores):.3f}: lower bbox_thr' if scores else
               'the detection file has no person box on them')
        raise ValueError(f'draw_predictions: nothing drawn: no person box of {bbox_file} scores >= {bbox_thr} on the '
                         f'first {len(images)} image(s) of {ann_file}; {why}')

    model = init_checked_model(config, checkpoint, device)
    visualizer = VISUALIZERS.build(dict(type='IPRPoseLocalVisualizer', name='ipr_demo_visualizer',
                                        radius=3, line_width=2))
    visualizer.set_dataset_meta(model.dataset_meta)
    sources = [osp.realpath(osp.join(img_dir, image['file_name'])) for image in images]
    out_files: List[str] = []  # every name first: a picture must not replace an image that is still to be read
    for image in drawn:
        out_files.append(_picture_path(out_dir, image, sources, out_files))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for image, out_file in zip(drawn, out_files):
        path = osp.join(img_dir, image['file_name'])
        bboxes = np.array([box for score, box in boxes[image['id']] if score >= bbox_thr],
                          dtype=np.float32).reshape(-1, 4)
        result = merge_data_samples(inference_topdown(model, path, bboxes))
        visualizer.add_datasample('prediction', mmcv.imread(path, channel_order='rgb'), data_sample=result,
                                  draw_gt=False, draw_bbox=True, draw_heatmap=False, kpt_thr=kpt_thr,
                                  show=False, out_file=out_file)
    return out_files


def _person_boxes(bbox_file: Union[str, Path], image_ids: Set[int],
                  ann_file: str) -> DefaultDict[int, List[Tuple[float, List[float]]]]:
    """(score, [x1, y1, x2, y2]) of each person box (``category_id`` 1, as the dataset keeps) of ``bbox_file``, by
    image id, after the dataset's checks of its entries (:func:`~ipr_plugin.datasets.body.coco_checks.
    detection_problem`: an int ``image_id``, 4 finite box numbers, a finite score; entries on images other than
    ``image_ids`` are not drawn, so they may be on images the annotation file does not list).

    Raises:
        ValueError: naming the file, and the entry where one is at fault.
    """
    entries = load_detection_file(str(bbox_file))
    # entries on images the annotation file does not list are never drawn: a whole split's detection file serves
    # a subset of its annotation file (the dataset, which would crash on them in mmpose, refuses them instead)
    listed = image_ids | {d['image_id'] for d in entries if type(d) is dict and type(d.get('image_id')) is int}
    found = detection_problem(entries, listed, ann_file)
    if found is not None:
        raise ValueError(f'draw_predictions: {detection_message(bbox_file, entries, found)}')
    boxes: DefaultDict[int, List[Tuple[float, List[float]]]] = defaultdict(list)
    for det in entries:
        if det['category_id'] == 1:
            x, y, w, h = det['bbox'][:4]
            boxes[det['image_id']].append((det['score'], [x, y, x + w, y + h]))
    return boxes


def _picture_path(out_dir: Union[str, Path], image: dict, sources: List[str], written: List[str]) -> str:
    """Where ``image``'s picture goes: inside ``out_dir``, under a name not written yet, over none of the
    ``sources`` (the images being drawn)."""
    stem = osp.splitext(osp.basename(image['file_name']))[0]
    out_file = osp.join(out_dir, f'{stem}.jpg')
    if out_file in written:
        out_file = osp.join(out_dir, f'{stem}_{image["id"]}.jpg')
    if osp.realpath(out_file) in sources:
        raise ValueError(f'draw_predictions: the picture of image {image["id"]} would replace the image file '
                         f'{out_file}: choose an output folder other than the images\' folders')
    return out_file

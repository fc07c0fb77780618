"""Draw a pose model's predictions (skeletons on images) with mmpose's own visualizer."""
import json
import os.path as osp
from collections import defaultdict
from pathlib import Path
from typing import List, Optional, Union

import numpy as np


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
    boxes of ``bbox_file`` (score >= ``bbox_thr``), and save each image with all predicted skeletons drawn.

    ``kpt_thr`` defaults to 0 (every predicted keypoint is drawn): IPRHead's score is the probability mass
    within a few heatmap cells of the prediction, so a correct keypoint of a broad map can score well under
    mmpose's usual 0.3, and a user looking at a briefly trained model wants to see all of its guesses.

    Each picture is named after its image's file name without folders (``a/b/c.png`` -> ``out_dir/c.jpg``; an
    absolute or ``../`` file name must not lead outside ``out_dir``), with ``_<image id>`` added when two images
    would share a name. A picture that would replace one of the images drawn is refused before anything is
    drawn.

    Returns:
        list[str]: the written image paths.
    """
    import mmcv
    from mmpose.apis import inference_topdown
    from mmpose.registry import VISUALIZERS
    from mmpose.structures import merge_data_samples

    from .checkpoint_check import init_checked_model

    with open(ann_file) as f:
        images = json.load(f)['images'][:num_images]
    with open(bbox_file) as f:
        boxes = defaultdict(list)
        for det in json.load(f):
            if det['score'] >= bbox_thr:
                x, y, w, h = det['bbox']
                boxes[det['image_id']].append([x, y, x + w, y + h])

    model = init_checked_model(config, checkpoint, device)
    visualizer = VISUALIZERS.build(dict(type='PoseLocalVisualizer', name='ipr_demo_visualizer',
                                        radius=3, line_width=2))
    visualizer.set_dataset_meta(model.dataset_meta)
    drawn = [image for image in images if boxes.get(image['id'])]
    sources = [osp.realpath(osp.join(img_dir, image['file_name'])) for image in images]
    out_files: List[str] = []  # every name first: a picture must not replace an image that is still to be read
    for image in drawn:
        out_files.append(_picture_path(out_dir, image, sources, out_files))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for image, out_file in zip(drawn, out_files):
        path = osp.join(img_dir, image['file_name'])
        bboxes = np.array(boxes[image['id']], dtype=np.float32).reshape(-1, 4)
        result = merge_data_samples(inference_topdown(model, path, bboxes))
        visualizer.add_datasample('prediction', mmcv.imread(path, channel_order='rgb'), data_sample=result,
                                  draw_gt=False, draw_bbox=True, draw_heatmap=False, kpt_thr=kpt_thr,
                                  show=False, out_file=out_file)
    return out_files


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

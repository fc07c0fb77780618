"""Predictions at COCO val2017's scale for timing the final COCO evaluation, without images.

COCO val2017 has 5000 images, and the AP-56 detector file mmpose evaluates with gives 104,125 person boxes, about
21 per image. The final evaluation (scoring, OKS NMS, COCOeval) sees only annotations and predictions, so this
writes a ground-truth file with random people, a detection file with the boxes, and one prediction per detector
box, in the form a top-down model's data samples reach ``CocoMetric.process``: some boxes follow a person (two
per person, so that OKS NMS has duplicates to remove), the rest are false positives.
"""
import json
import os.path as osp
from typing import Any, Dict, List, Tuple

import numpy as np

VAL2017_IMAGES = 5000
VAL2017_BOXES_PER_IMAGE = 21  # 104,125 boxes / 5000 images
TRAIN2017_IMAGES = 118287


def train_images_for(val_images: int) -> int:
    """The train split's image count that is to ``val_images`` as COCO train2017 is to val2017."""
    return max(1, round(val_images * TRAIN2017_IMAGES / VAL2017_IMAGES))


def write_coco_scale_set(out_dir: str, num_images: int = VAL2017_IMAGES,
                         boxes_per_image: int = VAL2017_BOXES_PER_IMAGE, num_keypoints: int = 17,
                         seed: int = 0, name: str = 'coco_scale') -> Tuple[str, str, List[Dict[str, Any]]]:
    """Write ``out_dir/{name}_gt.json`` and ``out_dir/{name}_det.json`` (the detector boxes, in the format of
    mmpose's ``bbox_file``) and return their paths with the predictions. With ``boxes_per_image=0``: the
    ground truth of a training split (about 1.2 people per image, as COCO's), no box and no prediction.

    Returns:
        (ann_file, det_file, samples): the samples in the order of the detection file's entries, each a dict as
        ``CocoMetric.process`` takes it: ``id``, ``img_id``, ``category_id``, ``pred_instances`` (``keypoints``
        (1, K, 2) float32 pixels, ``keypoint_scores`` (1, K) float32) and ``gt_instances`` (``bbox_scores`` (1,)
        and ``bbox_scales`` (1, 2), float32).
    """
    rng = np.random.default_rng(seed)
    images, annotations, samples, detections = [], [], [], []
    for image_id in range(1, num_images + 1):
        images.append(dict(id=image_id, file_name=f'{image_id:012d}.jpg', width=640, height=480))
        people = [_person(rng, num_keypoints) for _ in range(rng.poisson(2.2) if rng.random() < 0.54 else 0)]
        for box, keypoints, visible in people:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=1, iscrowd=0,
                area=float(box[2] * box[3]), bbox=box.tolist(), num_keypoints=int((visible > 0).sum()),
                keypoints=np.concatenate([keypoints, visible[:, None]], axis=1).ravel().tolist()))
        first_boxes = []
        for k in range(boxes_per_image):
            if k < len(people):  # a box on each person, its pose off by a few per cent of the person's size
                box, keypoints, _ = people[k]
                keypoints = keypoints + rng.normal(0, 0.04 * box[2:].max(), keypoints.shape)
                scale = box[2:] * rng.uniform(1.1, 1.4)
                first_boxes.append((keypoints, scale))
            elif k < 2 * len(people):  # and a second one, almost the same: what OKS NMS removes
                box, _, _ = people[k - len(people)]
                keypoints, scale = first_boxes[k - len(people)]
                keypoints = keypoints + rng.normal(0, 0.002 * scale.max(), keypoints.shape)
            else:
                box, keypoints, _ = _person(rng, num_keypoints)
                scale = box[2:] * 1.25
            score = np.float32(rng.uniform(0, 1))
            detections.append(dict(image_id=image_id, category_id=1, bbox=box.tolist(), score=float(score)))
            samples.append(dict(
                id=len(samples), img_id=image_id, category_id=1,
                pred_instances=dict(keypoints=keypoints[None].astype(np.float32),
                                    keypoint_scores=rng.uniform(0, 1, (1, num_keypoints)).astype(np.float32)),
                gt_instances=dict(bbox_scores=np.array([score], np.float32),
                                  bbox_scales=scale[None].astype(np.float32))))
    ann_file = osp.join(out_dir, f'{name}_gt.json')
    categories = [dict(id=1, name='person', keypoints=[f'k{i}' for i in range(num_keypoints)], skeleton=[])]
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    det_file = osp.join(out_dir, f'{name}_det.json')
    with open(det_file, 'w') as f:
        json.dump(detections, f)
    return ann_file, det_file, samples


def _person(rng: np.random.Generator, num_keypoints: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random person in a 640x480 image: box (x, y, w, h), keypoints (K, 2) in it, visibility (K,) in {0,1,2}."""
    w, h = rng.uniform(20, 300), rng.uniform(40, 400)
    box = np.array([rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), w, h])
    keypoints = box[:2] + rng.uniform(0, 1, (num_keypoints, 2)) * box[2:]
    return box, keypoints, rng.choice([0, 1, 2], num_keypoints, p=[0.3, 0.1, 0.6])

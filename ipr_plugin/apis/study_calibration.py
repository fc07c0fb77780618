"""Score calibration of the accuracy study: how well a keypoint's score predicts its error.

Every prediction the model made on a detector box is matched to the ground-truth person of the same image whose
box has the highest IoU with that detector box, if it is at least 0.5 (COCO's detection threshold). Matching on
the *detector* box, not on the predicted keypoints (OKS), keeps a bad pose from choosing the person that flatters
it. Unmatched predictions (false-positive boxes, boxes drifted off every person) have no defined error and are
left out. A keypoint's error is its distance to the ground truth divided by ``sqrt(area)`` of the ground-truth
person (COCO's OKS scale), over keypoints labeled v > 0.
"""
import json
import pickle
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

MATCH_IOU = 0.5
NUM_BINS = 10


def load_predictions(predictions_file: Path) -> list:
    """The data samples a study run dumped (mmengine ``DumpResults``)."""
    with open(predictions_file, 'rb') as f:  # written by our own DumpResults in the study's work dir
        return pickle.load(f)


def _xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with (N, 4) xyxy boxes."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-6)


def keypoint_errors(predictions: Sequence[Mapping], val_ann_file: str) -> Dict[str, Any]:
    """Per-keypoint (score, normalised error) pairs of matched predictions (matching: see the module doc).

    Args:
        predictions: dumped data samples (mmengine ``DumpResults``): ``img_id`` and ``pred_instances`` with
            ``keypoints`` (1, K, 2), ``keypoint_scores`` (1, K) and the detector box ``bboxes`` (1, 4) xyxy.
        val_ann_file: the COCO annotation file of the same split.

    Returns:
        dict: ``scores`` and ``errors`` (float arrays of one length), ``num_predictions``, ``num_matched``.
    """
    with open(val_ann_file) as f:
        coco = json.load(f)
    people: Dict[int, List[dict]] = {}
    for ann in coco['annotations']:
        if not ann.get('iscrowd', 0) and ann.get('num_keypoints', 0) > 0:
            people.setdefault(ann['image_id'], []).append(ann)
    scores, errors, matched = [], [], 0
    for sample in predictions:
        gts = people.get(int(sample['img_id']))
        if not gts:
            continue
        inst = sample['pred_instances']
        ious = _iou(np.asarray(inst['bboxes'], float)[0],
                    _xywh_to_xyxy(np.array([g['bbox'] for g in gts], float)))
        best = int(np.argmax(ious))
        if ious[best] < MATCH_IOU:
            continue
        matched += 1
        gt = np.asarray(gts[best]['keypoints'], float).reshape(-1, 3)
        labeled = gt[:, 2] > 0
        dist = np.linalg.norm(np.asarray(inst['keypoints'], float)[0] - gt[:, :2], axis=-1)
        errors.append(dist[labeled] / np.sqrt(max(float(gts[best]['area']), 1.0)))
        scores.append(np.asarray(inst['keypoint_scores'], float)[0][labeled])
    join = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
    return dict(scores=join(scores), errors=join(errors), num_predictions=len(predictions), num_matched=matched)


def spearman(scores: np.ndarray, errors: np.ndarray) -> Tuple[float, float]:
    """Spearman's rho between score and error and its p-value; nan where it is undefined (constant input)."""
    if len(scores) < 3 or np.ptp(scores) == 0 or np.ptp(errors) == 0:
        return float('nan'), float('nan')
    from scipy.stats import spearmanr
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        result = spearmanr(scores, errors)
    return float(result.statistic), float(result.pvalue)


def score_bins(scores: np.ndarray, errors: np.ndarray, num_bins: int = NUM_BINS) -> List[Dict[str, float]]:
    """Quantile bins of the score: each bin's score range, mean score, mean error and count.

    Tied scores cannot be split, so there are fewer bins where many keypoints share a score (one for
    constant scores).
    """
    if len(scores) == 0:
        return []
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, num_bins + 1)))
    index = np.clip(np.searchsorted(edges, scores, side='right') - 1, 0, max(len(edges) - 2, 0))
    bins = []
    for b in np.unique(index):
        sel = index == b
        bins.append(dict(score_lo=float(scores[sel].min()), score_hi=float(scores[sel].max()),
                         mean_score=float(scores[sel].mean()), mean_error=float(errors[sel].mean()),
                         count=int(sel.sum())))
    return bins


def calibration(variant: str, predictions_file: Path, val_ann_file: str) -> Dict[str, Any]:
    """Spearman correlation and score bins of one variant's dumped predictions."""
    pairs = keypoint_errors(load_predictions(predictions_file), val_ann_file)
    # a NaN keypoint or score (a model evaluated in fp16, or diverging) would make rho and its bin's mean NaN
    finite = np.isfinite(pairs['scores']) & np.isfinite(pairs['errors'])
    scores, errors = pairs['scores'][finite], pairs['errors'][finite]
    rho, p_value = spearman(scores, errors)
    return dict(variant=variant, spearman=rho, p_value=p_value, num_keypoints=int(len(scores)),
                num_nonfinite=int((~finite).sum()), num_predictions=pairs['num_predictions'],
                num_matched=pairs['num_matched'], bins=score_bins(scores, errors))

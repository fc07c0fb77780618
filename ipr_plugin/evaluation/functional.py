"""The per-image work of COCO keypoint evaluation, array-wide: instance scores and OKS NMS.

mmpose's ``CocoMetric.compute_metrics`` scores each detected person and suppresses duplicates with OKS NMS one
person and one keypoint at a time in Python (``mmpose.evaluation.functional.oks_nms``); on COCO val2017's
~104k detector boxes that is most of the final evaluation's time. These functions compute the same numbers
over whole arrays. They are *bit-identical* to mmpose's, not merely close: a score that moves by one ulp can
swap two tied detections in NMS or in COCOeval's ranking and change the AP. Where mmpose mixes NumPy scalars
and Python numbers, NumPy 1.x promotes (float32 scalar op Python int -> float64; float32 array op float64
scalar -> float32); the casts below reproduce those promotions, and the tests compare against mmpose's
functions bit for bit.

Pure NumPy, no mmpose imports. N: instances, K: keypoints.
"""
from typing import List, Optional

import numpy as np


def instance_scores(mode: str, keypoint_scores: np.ndarray, bbox_scores: np.ndarray,
                    keypoint_score_thr: float) -> np.ndarray:
    """Each instance's ranking score, as ``CocoMetric``'s ``score_mode`` defines it.

    Args:
        mode: ``'bbox'``, ``'keypoint'``, ``'bbox_keypoint'`` (box score x mean of the keypoint scores above
            ``keypoint_score_thr``; 0 when none is) or ``'bbox_rle'`` (box score + mean + max keypoint score).
        keypoint_scores: (N, K) keypoint scores.
        bbox_scores: (N,) detector box scores.
        keypoint_score_thr: see ``mode``.

    Returns:
        (N,) scores, in the dtype mmpose's per-instance arithmetic gives them.
    """
    if mode == 'bbox':
        return np.asarray(bbox_scores)
    if mode == 'keypoint':
        return keypoint_scores.mean(axis=1)
    if mode == 'bbox_rle':  # float(bbox + mean + max): Python floats
        return (bbox_scores + keypoint_scores.mean(axis=1) + keypoint_scores.max(axis=1)).astype(np.float64)
    if mode != 'bbox_keypoint':
        raise ValueError(f'instance_scores: unknown score mode {mode!r}')
    # mmpose compares one numpy scalar at a time with the Python float threshold, which numpy < 2 does in float64
    # (a float32 array against a Python float is compared in float32): compare in the dtype the scalar gets
    scalar_dtype = np.result_type(keypoint_scores.dtype.type(0), keypoint_score_thr)
    valid = keypoint_scores.astype(scalar_dtype, copy=False) > keypoint_score_thr
    # mmpose adds the valid scores one by one to the Python int 0: the sum is float64 under numpy < 2 and of the
    # scores' dtype under numpy 2 (NEP 50); cumsum adds in the same order, and the zeros of the invalid ones change
    # nothing
    accumulate = type(0 + keypoint_scores.dtype.type(0))
    total = np.cumsum(np.where(valid, keypoint_scores, 0), axis=1, dtype=accumulate)[:, -1]
    count = valid.sum(axis=1)
    mean = np.divide(total, count.astype(total.dtype), out=np.zeros_like(total), where=count > 0)
    return bbox_scores * mean  # bbox score x Python int 0 is float64 zero in mmpose too


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
               block_elements: int = 1 << 22) -> np.ndarray:
    """Object keypoint similarity between every two of an image's poses, as mmpose's ``oks_iou`` (all
    keypoints counted, ``vis_thr=None``) computes it for each pair.

    Args:
        keypoints: (N, K, 2+) poses in pixels (x, y first; further columns are ignored).
        areas: (N,) each pose's area in square pixels.
        sigmas: (K,) COCO's per-keypoint sigmas.
        block_elements: about how many (row, column, keypoint) terms are computed at once: rows are taken in
            blocks, so that memory grows with N * N (the result) rather than N * N * K in float64 (for 3000 boxes
            on one image, as a detector with no cap per image gives, each whole (N, N, K) float64 temporary
            would be 1.2 GB, and several are alive at once). The values do not depend on it: every row is
            computed on its own.

    Returns:
        (N, N) float32 OKS; row i is ``oks_iou(pose i, all poses, area i, areas)``.
    """
    num, joints = keypoints.shape[:2]
    variances = (sigmas * 2) ** 2
    out = np.empty((num, num), np.float32)
    step = max(1, block_elements // max(1, num * joints))
    for start in range(0, num, step):
        rows = slice(start, start + step)
        dx = keypoints[None, :, :, 0] - keypoints[rows, None, :, 0]
        dy = keypoints[None, :, :, 1] - keypoints[rows, None, :, 1]
        ratio = (dx ** 2 + dy ** 2) / variances  # (rows, N, K)
        # mmpose divides by ((a_g + a_d) / 2 + np.spacing(1)), a float64 scalar: numpy < 2 casts it to the
        # array's dtype, numpy 2 divides in float64 (NEP 50)
        scale_dtype = np.result_type(ratio, np.float64(0))
        scale = (((areas[rows, None] + areas[None, :]) / 2).astype(np.float64) + np.spacing(1)).astype(scale_dtype)
        e = ratio / scale[..., None] / 2
        # mmpose divides in float64 and stores into float32: the same float32 as dividing in float32 (rounding
        # twice through a format with more than twice the bits is exact for division)
        out[rows] = np.exp(-e).sum(axis=-1) / joints
    return out


def greedy_nms(scores: np.ndarray, overlaps: np.ndarray, thr: float) -> List[int]:
    """Greedy NMS as mmpose's ``oks_nms``: take the best remaining instance, drop every remaining one whose
    overlap with it exceeds ``thr``, repeat.

    Args:
        scores: (N,) instance scores; ties are broken as ``scores.argsort()[::-1]`` breaks them.
        overlaps: (N, N) pairwise overlaps (e.g. :func:`oks_matrix`).
        thr: overlaps above it are duplicates.

    Returns:
        the kept indices, best first.
    """
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        best, order = order[0], order[1:]
        keep.append(int(best))
        order = order[overlaps[best, order] <= thr]
    return keep


def keypoint_extent_areas(keypoints: np.ndarray) -> np.ndarray:
    """(N,) area of each pose's keypoint bounding box, (N, K, 2+) keypoints in pixels: mmpose's fallback when
    the samples carry no box scales."""
    span = keypoints[..., :2].max(axis=1) - keypoints[..., :2].min(axis=1)
    return span[:, 0] * span[:, 1]


def first_of_each_id(ids: np.ndarray, rows: Optional[np.ndarray] = None) -> np.ndarray:
    """The rows of one image's instances sorted by instance id (stable), keeping the first of duplicate ids, as
    mmpose's ``_sort_and_unique_bboxes`` does for results gathered from several processes."""
    rows = np.arange(len(ids)) if rows is None else rows
    order = np.argsort(ids, kind='stable')
    sorted_ids = ids[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return rows[order[first]]

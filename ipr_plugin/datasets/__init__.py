"""Datasets: a synthetic COCO-format person-keypoint writer and a COCO dataset that checks its inputs.

The writer is pure numpy/cv2; ``IPRCocoDataset`` is registered into mmpose's ``DATASETS`` when mmpose imports.
"""
from .synthetic_coco import DIFFICULTIES, write_synthetic_coco

__all__ = ['DIFFICULTIES', 'write_synthetic_coco']

"""Datasets: a synthetic COCO-format person-keypoint writer and a COCO dataset that checks its inputs.

The writer is pure numpy/cv2. ``IPRCocoDataset`` (``body/coco_dataset.py``), ``ipr_collate`` and the transforms
are registered into mmpose's registries when ``ipr_plugin`` is imported (its ``__init__`` imports them).
"""
from .synthetic_coco import DIFFICULTIES, write_synthetic_coco

__all__ = ['DIFFICULTIES', 'write_synthetic_coco']

"""Evaluation: :class:`IPRCocoMetric` (``CocoMetric`` that refuses NaN predictions)."""
from .coco_metric import IPRCocoMetric

__all__ = ['IPRCocoMetric']

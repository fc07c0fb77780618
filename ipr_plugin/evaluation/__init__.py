"""Evaluation: :class:`IPRCocoMetric` (``CocoMetric`` that refuses NaN predictions and computes its final COCO
evaluation over whole arrays, :mod:`.functional`)."""
from .coco_metric import IPRCocoMetric

__all__ = ['IPRCocoMetric']

"""Batch collation that ships a batch between processes as a few contiguous tensors.

mmengine's default ``pseudo_collate`` keeps every sample's image and label tensors separate. A DataLoader
worker hands each tensor to the main process through its own shared-memory segment, so a batch of 64
top-down samples costs a few hundred segment transfers, and the main process spends its time receiving
them instead of feeding the GPU. ``ipr_collate`` stacks the images (uint8, before normalisation: 4x less
to move than float) and the per-instance labels in the worker; the data samples keep only metadata.
:class:`IPRDataPreprocessor` hands the labels back to the samples on the device.
"""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.registry import FUNCTIONS
from mmengine.structures import InstanceData
from torch.utils.data import default_collate

LABELS_KEY = 'instance_labels'


@FUNCTIONS.register_module()
def ipr_collate(data_batch: Sequence[dict]) -> Dict:
    """Collate packed top-down samples into one image tensor and stacked instance labels.

    Args:
        data_batch: B dicts from ``PackPoseInputs`` or ``IPRPackInputs``: ``inputs`` (C, H, W) uint8 and
            ``data_samples``.

    Returns:
        dict: ``inputs`` (B, C, H, W) (channels-last memory order from ``IPRPackInputs``); ``data_samples``
        (list of B samples, their ``gt_instance_labels`` moved out: :class:`CollatedLabels` in their place);
        ``instance_labels`` dict of (B, N, ...) tensors, present when every sample has labels of one shape
        (top-down training: N = 1). Anything else is left per sample, as ``pseudo_collate`` does.
    """
    inputs = [item['inputs'] for item in data_batch]
    samples = [item['data_samples'] for item in data_batch]
    if any(x.shape != inputs[0].shape for x in inputs):
        raise ValueError('ipr_collate: all inputs of a batch must have one shape (top-down crops), got '
                         f'{sorted({tuple(x.shape) for x in inputs})}')
    batch = dict(inputs=stack_images(inputs), data_samples=samples)
    labels = _stack_labels(samples)
    if labels is not None:
        batch[LABELS_KEY] = labels
        for sample in samples:
            sample.gt_instance_labels = CollatedLabels()
    return batch


class CollatedLabelsError(AttributeError):
    """A label read from a sample whose labels :func:`ipr_collate` stacked, before ``IPRDataPreprocessor`` handed
    them back (an ``AttributeError``, so that ``hasattr`` still answers False)."""


class CollatedLabels(InstanceData):
    """Stands in for a sample's ``gt_instance_labels`` while :func:`ipr_collate` holds them stacked beside the
    samples: ``IPRDataPreprocessor`` replaces it with the labels. Under another data preprocessor (mmpose's
    ``PoseDataPreprocessor`` drops the stacked labels), a head that reads a label gets an error naming the pairing,
    not mmengine's ``no attribute '_gt_instance_labels'``."""

    def __getattr__(self, name: str):
        if name.startswith('_'):  # pickling, copying and mmengine's own fields look these up
            raise AttributeError(name)
        raise CollatedLabelsError(
            f"gt_instance_labels.{name}: ipr_collate (the train loader's collate_fn) stacked this batch's labels "
            'beside its samples, and only IPRDataPreprocessor hands them back; set '
            "model.data_preprocessor=dict(type='IPRDataPreprocessor', ...) or the loader's "
            "collate_fn=dict(type='pseudo_collate')")


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack (C, H, W) images into (B, C, H, W), keeping channels-last memory order where the images have it.

    Images from :class:`IPRPackInputs` are (H, W, C) arrays viewed as (C, H, W); stacking them as (H, W, C)
    is one plain copy and gives a batch already in channels-last order. Contiguous (C, H, W) images (mmpose's
    ``PackPoseInputs``) are stacked as they are.
    """
    if all(x.dim() == 3 and x.permute(1, 2, 0).is_contiguous() and not x.is_contiguous() for x in images):
        return _stack([x.permute(1, 2, 0) for x in images]).permute(0, 3, 1, 2)
    return _stack(images)


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    # torch's default_collate stacks straight into shared memory inside a DataLoader worker, so the batch is
    # not copied a second time on its way to the main process
    return default_collate(list(tensors))


def _stack_labels(samples: List) -> Optional[Dict[str, torch.Tensor]]:
    """Per-key (B, N, ...) stacks of the samples' labels; None unless every sample has the same keys, of one shape."""
    if not all('gt_instance_labels' in s for s in samples):
        return None
    per_sample = [s.gt_instance_labels for s in samples]
    keys = list(per_sample[0].keys())
    if any(set(labels.keys()) != set(keys) for labels in per_sample):  # else a key only some samples have is lost
        return None
    stacked = {}
    for key in keys:
        values = [labels.get(key) for labels in per_sample]
        if not all(isinstance(v, torch.Tensor) and v.shape == values[0].shape for v in values):
            return None
        stacked[key] = _stack(values)
    return stacked

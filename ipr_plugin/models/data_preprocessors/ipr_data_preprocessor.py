"""Data preprocessor for batches from :func:`ipr_collate` (and, unchanged, from ``pseudo_collate``)."""
import math
from typing import Any, List, Optional, Tuple

import torch
from mmengine.structures import BaseDataElement, InstanceData
from mmpose.models.data_preprocessors import PoseDataPreprocessor
from mmpose.registry import MODELS

from ...datasets.collate import LABELS_KEY


@MODELS.register_module()
class IPRDataPreprocessor(PoseDataPreprocessor):
    """mmpose's ``PoseDataPreprocessor`` plus the stacked labels of :func:`ipr_collate`, with data samples moved
    to the device without copying their metainfo.

    The uint8 batch is moved to the device first and converted there (mmengine's order), the stacked
    labels follow in one copy each and are given back to the samples as views, so the head sees exactly
    what it would with ``pseudo_collate``. The samples are moved by :func:`element_to`, which gives the same
    samples as mmengine's ``BaseDataElement.to`` but shares the metainfo values instead of deep-copying them.
    A stacked (B, C, H, W) batch gets the ``pad_shape`` metainfo a list of images gets, (H', W'): mmpose 1.3.2
    reads it from ``shape[1:3]``, (C, H), for stacked batches.

    Args:
        channels_last (bool): Return the normalised batch in channels-last memory format (pair it with
            :class:`ChannelsLastHook`, which converts the model). GPU batches only, as the hook converts GPU
            models only (see there why).
        **kwargs: ``PoseDataPreprocessor``'s arguments (``mean``, ``std``, ``bgr_to_rgb``, ``non_blocking``,
            ...). ``non_blocking=True`` with the dataloader's ``pin_memory=True`` overlaps the copies.
    """

    def __init__(self, channels_last: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channels_last = channels_last
        # mmengine swaps the channels with a Python list index, which torch copies to the device blocking: a
        # stream sync per batch (and per image of a pseudo_collate list). This index moves with the model instead.
        self.register_buffer('_channel_order', torch.tensor([2, 1, 0]), persistent=False)

    def cast_data(self, data: Any) -> Any:
        # mmengine recurses through dicts and lists by calling self.cast_data, so every sample comes here.
        if isinstance(data, BaseDataElement):
            return element_to(data, self.device, non_blocking=self._non_blocking)
        return super().cast_data(data)

    def _get_pad_shape(self, data: dict) -> List[Tuple[int, int]]:
        inputs = data['inputs']
        if not (isinstance(inputs, torch.Tensor) and inputs.dim() == 4):
            return super()._get_pad_shape(data)
        divisor = self.pad_size_divisor
        pad = tuple(int(math.ceil(size / divisor)) * divisor for size in inputs.shape[-2:])
        return [pad] * inputs.shape[0]

    def forward(self, data: dict, training: bool = False) -> dict:
        """A batch from :func:`ipr_collate` (``inputs`` (B, C, H, W) uint8, the labels stacked beside the samples)
        or mmpose's ``pseudo_collate`` (a list of (C, H, W) images) -> ``inputs`` (B, 3, H, W) float on the
        model's device, normalised (and RGB when ``bgr_to_rgb``), and ``data_samples`` with their
        ``gt_instance_labels`` handed back as views of the stacked labels."""
        labels = data.pop(LABELS_KEY, None) if isinstance(data, dict) else None
        conversion = self._channel_conversion
        if conversion and isinstance(data, dict):
            _check_channels(data.get('inputs'))
            swapped = self._swap_channels(self.cast_data(data.get('inputs')))
            if swapped is not None:  # done here: mmengine must not swap them back
                data, conversion = dict(data, inputs=swapped), False
        # The batch augments (mmpose's BatchSyncRandomResize...) rescale the samples' labels in place: they run
        # here, once the labels are back on the samples, not inside mmpose's forward.
        batch_augments, self.batch_augments = self.batch_augments, None
        saved, self._channel_conversion = self._channel_conversion, conversion
        try:
            out = super().forward(data, training)
        finally:
            self.batch_augments, self._channel_conversion = batch_augments, saved
        if labels is not None:
            labels = self.cast_data(labels)
            for i, sample in enumerate(out['data_samples']):
                sample.gt_instance_labels = InstanceData(**{k: v[i] for k, v in labels.items()})
        if training and batch_augments is not None:
            for batch_aug in batch_augments:
                out['inputs'], out['data_samples'] = batch_aug(out['inputs'], out['data_samples'])
        if self.channels_last and out['inputs'].is_cuda:
            out['inputs'] = out['inputs'].contiguous(memory_format=torch.channels_last)
        return out

    def _swap_channels(self, inputs: Any) -> Optional[Any]:
        """mmengine's channel swap (channels 2, 1, 0 kept, in that order) of a (B, C, H, W) batch or of each
        (C, H, W) image of a list, on the device they are on; None for anything else (left to mmengine)."""
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            return inputs.index_select(1, self._channel_order.to(inputs.device))
        if isinstance(inputs, (list, tuple)) and all(isinstance(x, torch.Tensor) and x.dim() == 3 for x in inputs):
            return [x.index_select(0, self._channel_order.to(x.device)) for x in inputs]
        return None


def element_to(element: BaseDataElement, *args, **kwargs) -> BaseDataElement:
    """``element.to(*args, **kwargs)`` without mmengine's deep copy of the metainfo.

    mmengine's ``BaseDataElement.to`` builds the moved element with ``new()``, which deep-copies every metainfo
    value: for a top-down sample that includes ``raw_ann_info`` (the COCO annotation with its segmentation
    polygons), 0.14-0.15 ms per sample on one core of the 2-core machine (``BENCHMARKS.md``, row (f)), about
    18 ms of main-process time per batch of 128, serialised with the GPU's work. Here the moved element shares
    the metainfo values with ``element``; its data fields are moved exactly as mmengine moves them (tensors and
    nested data elements; anything without ``.to`` is kept as it is). Metainfo is read-only in mmpose's models
    and metrics, and the unmoved sample is not used again once the model has its moved copy. An element whose
    class has its own ``to`` (mmpose's ``MultilevelPixelData`` keeps lists of tensors) is moved by it.

    Returns:
        A new element of the same class: equal metainfo (the same objects) and equal, moved data.
    """
    if type(element).to is not BaseDataElement.to:
        return element.to(*args, **kwargs)
    moved = element.__class__()
    for key, value in element.metainfo_items():
        moved.set_field(value, key, field_type='metainfo')
    data = {}
    for key, value in element.items():
        if isinstance(value, BaseDataElement):
            value = element_to(value, *args, **kwargs)
        elif hasattr(value, 'to'):
            value = value.to(*args, **kwargs)
        data[key] = value
    moved.set_data(data)  # through setattr, as mmengine does, so property setters and length checks apply
    return moved


def _check_channels(inputs: Any) -> None:
    """Refuse images of fewer than 3 channels under ``bgr_to_rgb``: mmengine indexes channel 2 of a stacked
    (B, C, H, W) batch or of each (C, H, W) image of a list (an IndexError); 4 channels (BGRA) become RGB."""
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        found = [('the batch', tuple(inputs.shape), inputs.shape[1])]
    elif isinstance(inputs, (list, tuple)):
        found = [('an image of the batch', tuple(x.shape), x.shape[0]) for x in inputs
                 if isinstance(x, torch.Tensor) and x.dim() == 3]
    else:
        found = []
    for what, shape, channels in found:
        if channels < 3:
            raise ValueError(f'IPRDataPreprocessor: bgr_to_rgb / rgb_to_bgr needs 3-channel images, {what} {shape} '
                             f'has {channels} (a LoadImage with another color_type, or a grayscale array given to '
                             'inference?)')

"""Data preprocessor for batches from :func:`ipr_collate` (and, unchanged, from ``pseudo_collate``)."""
import torch
from mmengine.structures import InstanceData
from mmpose.models.data_preprocessors import PoseDataPreprocessor
from mmpose.registry import MODELS

from ...datasets.collate import LABELS_KEY


@MODELS.register_module()
class IPRDataPreprocessor(PoseDataPreprocessor):
    """mmpose's ``PoseDataPreprocessor`` plus the stacked labels of :func:`ipr_collate`.

    The uint8 batch is moved to the device first and converted there (mmengine's order), the stacked
    labels follow in one copy each and are given back to the samples as views, so the head sees exactly
    what it would with ``pseudo_collate``.

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

    def forward(self, data: dict, training: bool = False) -> dict:
        labels = data.pop(LABELS_KEY, None) if isinstance(data, dict) else None
        out = super().forward(data, training)
        if labels is not None:
            labels = self.cast_data(labels)
            for i, sample in enumerate(out['data_samples']):
                sample.gt_instance_labels = InstanceData(**{k: v[i] for k, v in labels.items()})
        if self.channels_last and out['inputs'].is_cuda:
            out['inputs'] = out['inputs'].contiguous(memory_format=torch.channels_last)
        return out

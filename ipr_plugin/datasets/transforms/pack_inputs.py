"""``PackPoseInputs`` that keeps the image in its (H, W, C) memory order."""
import numpy as np
import torch
from mmpose.datasets.transforms import PackPoseInputs
from mmpose.registry import TRANSFORMS


@TRANSFORMS.register_module()
class IPRPackInputs(PackPoseInputs):
    """mmpose's ``PackPoseInputs`` without the per-sample transpose of the image.

    ``inputs`` is the same (C, H, W) uint8 tensor as mmpose's, with the same values, but it is a view of the
    (H, W, C) array with channels-last strides instead of a contiguous copy. :func:`ipr_collate` stacks such
    views into one channels-last batch with a single copy, which is the memory format a channels-last model
    wants anyway; any other consumer sees an ordinary, if strided, (C, H, W) tensor. Same arguments and keys as
    ``PackPoseInputs``.
    """

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if not (isinstance(img, np.ndarray) and img.ndim == 3):
            return super().transform(results)
        # PackPoseInputs packs whatever is under 'img'; give it a one-pixel stand-in and pack the real image here
        results['img'] = img[:1, :1]
        try:
            packed = super().transform(results)
        finally:
            results['img'] = img
        packed['inputs'] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return packed

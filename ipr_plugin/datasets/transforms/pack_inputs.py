"""``PackPoseInputs`` without its two per-sample copies: the image transpose and the metainfo deep copy."""
import numpy as np
import torch
from mmpose.datasets.transforms import PackPoseInputs
from mmpose.registry import TRANSFORMS


@TRANSFORMS.register_module()
class IPRPackInputs(PackPoseInputs):
    """mmpose's ``PackPoseInputs`` that copies neither the image nor the metainfo.

    - ``inputs`` is the same (C, H, W) uint8 tensor as mmpose's, with the same values, but it is a view of the
      (H, W, C) array with channels-last strides instead of a contiguous copy. :func:`ipr_collate` stacks such
      views into one channels-last batch with a single copy, the memory format a channels-last model wants
      anyway; any other consumer sees an ordinary, if strided, (C, H, W) tensor.
    - the metainfo (``meta_keys``) holds the results' own values. mmengine's ``set_metainfo`` deep-copies them,
      including ``raw_ann_info`` (a COCO annotation with its segmentation polygons), for every sample; with the
      transpose that is most of the packing cost (``BENCHMARKS.md``: 0.34 -> 0.10 ms); the results dict is
      discarded after packing and its values were made for this sample alone (the dataset hands out fresh
      copies), so the copy protects nothing.

    Same arguments, keys and values as ``PackPoseInputs``.
    """

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        # PackPoseInputs packs whatever is under 'img': give it a one-pixel stand-in and pack the image here;
        # and let it set no metainfo, which is set below without the deep copy
        meta_keys, self.meta_keys = self.meta_keys, ()
        stand_in = isinstance(img, np.ndarray) and img.ndim == 3
        if stand_in:
            results['img'] = img[:1, :1]
        try:
            packed = super().transform(results)
        finally:
            self.meta_keys = meta_keys
            if stand_in:
                results['img'] = img
        if stand_in:
            packed['inputs'] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        sample = packed['data_samples']
        for key in meta_keys:
            if key in results:
                sample.set_field(results[key], key, field_type='metainfo')
        return packed

"""``TopdownAffine`` that decodes only the part of a deferred JPEG its warp reads."""
from typing import Optional

import numpy as np
from mmpose.datasets.transforms import TopdownAffine
from mmpose.registry import TRANSFORMS
from mmpose.structures.bbox import get_udp_warp_matrix, get_warp_matrix

from .jpeg_region import DeferredJpeg, warp_source_box


@TRANSFORMS.register_module()
class IPRTopdownAffine(TopdownAffine):
    """mmpose's ``TopdownAffine``; same arguments, keys and pixels.

    After ``IPRLoadImage(decode_region=True)``, whose ``results`` carry a :class:`DeferredJpeg` under
    ``img_deferred`` instead of ``img``, it decodes the box of source pixels the warp reads (and a margin) into a
    zero image of the full size and warps that (see :mod:`.jpeg_region`); ``img_deferred`` is removed. Any other
    ``results`` go to ``TopdownAffine`` unchanged.
    """

    def transform(self, results: dict) -> Optional[dict]:
        deferred = results.pop('img_deferred', None)
        if deferred is not None and 'img' not in results:
            results['img'] = self._decode(results, deferred)
        return super().transform(results)

    def _decode(self, results: dict, deferred: DeferredJpeg) -> np.ndarray:
        """The deferred image with the pixels ``TopdownAffine`` will read decoded."""
        if np.shape(results.get('bbox_center'))[:1] != (1,):  # TopdownAffine asserts one instance
            return deferred.full()
        w, h = self.input_size
        # the matrix TopdownAffine computes next, from the same inputs (its aspect fix is applied to a copy here)
        scale = self._fix_aspect_ratio(results['bbox_scale'], aspect_ratio=w / h)[0]
        rot = results['bbox_rotation'][0] if 'bbox_rotation' in results else 0.
        make = get_udp_warp_matrix if self.use_udp else get_warp_matrix
        warp_mat = make(results['bbox_center'][0], scale, rot, output_size=(w, h))
        return deferred.canvas_for(warp_source_box(warp_mat, (int(w), int(h)), deferred.shape))

"""``RandomFlip`` whose flipped image is a contiguous array, or a flip recorded on an image not decoded yet."""
from typing import List, Union

import cv2
import numpy as np
from mmcv import imflip
from mmpose.datasets.transforms import RandomFlip
from mmpose.registry import TRANSFORMS

_CV2_FLIP_CODES = {'horizontal': 1, 'vertical': 0, 'diagonal': -1}
# Dtypes cv2.flip returns unchanged (it casts int64 to int32, refuses bool and uint32); it also drops the axis of
# (H, W, 1) arrays and refuses more than 512 channels (CV_CN_MAX): those go through numpy's copy.
_CV2_KEEPS = tuple(np.dtype(t) for t in ('uint8', 'int8', 'uint16', 'int16', 'int32', 'float16', 'float32',
                                         'float64'))


def contiguous_flip(view: np.ndarray, direction: str) -> np.ndarray:
    """The contiguous copy of ``view``, a flipped view from ``mmcv.imflip(image, direction)``.

    Flipping the view back gives the original array without a copy; ``cv2.flip`` then writes the flipped
    image with vectorised row copies: the same pixels as ``np.ascontiguousarray(view)`` at a small fraction of
    its cost.
    """
    if view.dtype not in _CV2_KEEPS or view.ndim not in (2, 3) or (view.ndim == 3 and not 1 < view.shape[-1] <= 512):
        return np.ascontiguousarray(view)
    return cv2.flip(np.ascontiguousarray(imflip(view, direction)), _CV2_FLIP_CODES[direction])


@TRANSFORMS.register_module()
class IPRRandomFlip(RandomFlip):
    """mmpose's ``RandomFlip`` with a contiguous flipped image; same arguments, keys and pixels.

    mmpose flips with ``np.flip``, a view with negative strides. Nothing is copied then, but the next transform
    (``TopdownAffine``'s ``cv2.warpAffine``) has to make it contiguous, with numpy's element-wise copy of the
    reversed image: most of ``TopdownAffine``'s time on 640x480 images (``BENCHMARKS.md``: 1.22 ms per sample,
    0.42 ms with this transform). Here the copy is made with ``cv2.flip``. An image that
    ``IPRLoadImage(decode_region=True)`` has not decoded (``img_deferred``) gets a left-right flip recorded on it
    instead, for ``IPRTopdownAffine``'s decoder; other directions decode it here first.
    """

    def transform(self, results: dict) -> dict:
        # an image not decoded yet (IPRLoadImage(decode_region=True)) gets a left-right flip recorded on it for
        # IPRTopdownAffine; other directions need its pixels
        deferred = results.get('img_deferred') if 'img' not in results else None
        if deferred is not None and self.direction not in ('horizontal', ['horizontal']):
            results['img'] = results.pop('img_deferred').full()
            deferred = None
        if deferred is not None:
            results['img'] = _NO_PIXELS  # RandomFlip flips an image; keypoints and boxes need only img_shape
        results = super().transform(results)
        if deferred is not None:
            del results['img']
        if results.get('flip'):
            direction = results['flip_direction']
            if deferred is None:
                results['img'] = _flip_all(results['img'], direction)
            else:
                deferred.mirror = not deferred.mirror
            if 'img_mask' in results:
                results['img_mask'] = _flip_all(results['img_mask'], direction)
        return results


# what RandomFlip flips while the image is deferred
_NO_PIXELS = np.zeros((0, 0, 3), np.uint8)


def _flip_all(img: Union[np.ndarray, List[np.ndarray]], direction: str):
    if isinstance(img, list):
        return [contiguous_flip(i, direction) for i in img]
    return contiguous_flip(img, direction)

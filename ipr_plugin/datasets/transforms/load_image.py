"""``LoadImage`` with the pixel-identical libjpeg-turbo decoder of :mod:`.jpeg`."""
from typing import Optional

import mmcv
from mmengine import fileio
from mmpose.datasets.transforms import LoadImage
from mmpose.registry import TRANSFORMS

from .jpeg import decode_jpeg_bgr, fast_jpeg_available


@TRANSFORMS.register_module()
class IPRLoadImage(LoadImage):
    """mmpose's ``LoadImage``, decoding JPEGs with :func:`decode_jpeg_bgr` (same pixels, less overhead).

    Same arguments, keys and errors as ``LoadImage``. The fast decoder only replaces what it would reproduce
    exactly: OpenCV's default colour decode (``color_type='color'``, ``imdecode_backend='cv2'``). An image it
    declines (see :func:`decode_jpeg_bgr`) is decoded from the bytes already read as ``LoadImage`` would
    decode it (``mmcv.imfrombytes``); any other setting and any read or decode failure take ``LoadImage``'s own
    path, so a missing or corrupt file is reported by mmpose as before.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fast_decode = (fast_jpeg_available() and self.color_type == 'color'
                            and self.imdecode_backend == 'cv2' and self.file_client_args is None)

    def transform(self, results: dict) -> Optional[dict]:
        if self.fast_decode and 'img' not in results and results.get('img_path'):
            img = self._decode(results['img_path'])
            if img is not None:
                # LoadImage's branch for an image already in the results sets the shapes and float conversion
                results['img'] = img
        return super().transform(results)

    def _decode(self, path: str):
        """The image at ``path``, or None if reading or decoding fails (LoadImage then reports it)."""
        try:
            img_bytes = fileio.get(path, backend_args=self.backend_args)
            img = decode_jpeg_bgr(img_bytes)
            # not a JPEG this decoder reproduces: decode the same bytes as LoadImageFromFile would
            return img if img is not None else mmcv.imfrombytes(img_bytes, flag=self.color_type,
                                                              backend=self.imdecode_backend)
        except Exception:  # noqa: BLE001 - LoadImage reads again and reports the failure in its words
            return None

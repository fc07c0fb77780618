"""``LoadImage`` with the faster, pixel-identical JPEG decoder of :mod:`.jpeg`."""
from typing import Optional

from mmengine import fileio
from mmpose.datasets.transforms import LoadImage
from mmpose.registry import TRANSFORMS

from .jpeg import decode_jpeg_bgr, fast_jpeg_available


@TRANSFORMS.register_module()
class IPRLoadImage(LoadImage):
    """mmpose's ``LoadImage``, decoding JPEGs with :func:`decode_jpeg_bgr` (same pixels, about half the time).

    Same arguments, keys and errors as ``LoadImage``. The fast decoder only replaces what it would reproduce
    exactly: OpenCV's default colour decode (``color_type='color'``, ``imdecode_backend='cv2'``). Any other
    setting, any image it declines (see :func:`decode_jpeg_bgr`) and any read error take ``LoadImage``'s own
    path, so a missing or corrupt file is reported by mmpose as before.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fast_decode = (fast_jpeg_available() and self.color_type == 'color'
                            and self.imdecode_backend == 'cv2' and self.file_client_args is None)

    def transform(self, results: dict) -> Optional[dict]:
        if self.fast_decode and 'img' not in results and results.get('img_path'):
            try:
                img_bytes = fileio.get(results['img_path'], backend_args=self.backend_args)
            except Exception:  # noqa: BLE001 - LoadImage reads again below and reports it in its words
                img_bytes = None
            img = decode_jpeg_bgr(img_bytes) if img_bytes is not None else None
            if img is not None:
                # LoadImage's branch for an image already in the results sets the shapes and float conversion
                results['img'] = img
        return super().transform(results)

"""JPEG decoding that is pixel-identical to OpenCV's, with less overhead.

``cv2.imdecode`` (what mmcv's ``imfrombytes`` calls, and so mmpose's ``LoadImage``) is the largest per-sample
cost of a top-down pipeline. ``simplejpeg`` decodes with libjpeg-turbo's defaults (accurate integer IDCT, fancy
upsampling) straight into BGR, which gives the same pixels; ``IPRLoadImage`` costs 1.39 ms per 640x480 sample
where ``LoadImage`` costs 1.57 ms (``BENCHMARKS.md``, 2-core CPU), the decode itself being most of both. Its
output is used only where
it provably matches OpenCV: a baseline or progressive JPEG in YCbCr or grayscale whose EXIF orientation is
absent or 1 (OpenCV's ``IMREAD_COLOR`` applies EXIF rotations, libjpeg-turbo does not). Everything else —
another format, a rotated, CMYK, truncated or corrupt file, or no ``simplejpeg`` installed — returns ``None``
and the caller decodes with OpenCV as before.
"""
import os
from typing import Optional, Tuple

import mmcv
import numpy as np

from ...compat import release

try:  # an optional speed-up: without it every image goes through OpenCV
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None
# decode_jpeg's strict mode (a warning is an error, below) came in simplejpeg 1.7: an older one decodes nothing
_TOO_OLD = simplejpeg is not None and release(simplejpeg.__version__) < release('1.7')
_NO_DECODER = f'simplejpeg {simplejpeg.__version__} older than 1.7' if _TOO_OLD else 'simplejpeg not installed'
if _TOO_OLD:  # pragma: no cover - depends on the environment
    simplejpeg = None

_SOI, _SOS, _EOI, _APP1 = 0xD8, 0xDA, 0xD9, 0xE1
_EXIF_HEADER = b'Exif\x00\x00'
_ORIENTATION_TAG = 0x0112
_UNKNOWN = -1
# Colour spaces whose conversion to BGR is libjpeg-turbo's own in both decoders (CMYK and YCCK files, rare and
# sometimes Adobe-inverted, stay with OpenCV).
_SAME_AS_OPENCV = ('YCbCr', 'Gray')
# cv2.imdecode refuses images of more pixels than OPENCV_IO_MAX_IMAGE_PIXELS (in OpenCV's format: digits, or digits
# and KB / MB) or, unset, 2**30
_PIXEL_LIMIT_ENV, _PIXEL_LIMIT_DEFAULT = 'OPENCV_IO_MAX_IMAGE_PIXELS', 1 << 30
_LIMIT_UNITS = {'': 1, 'KB': 1 << 10, 'Kb': 1 << 10, 'kb': 1 << 10, 'MB': 1 << 20, 'Mb': 1 << 20, 'mb': 1 << 20}


def fast_jpeg_available() -> bool:
    """Whether :func:`decode_jpeg_bgr` can decode at all (``simplejpeg`` 1.7 or later is installed)."""
    return simplejpeg is not None


def jpeg_decoder() -> str:
    """What decodes JPEGs in :class:`IPRLoadImage` here, for the machine line of a report: loader speed
    depends on it, and a machine without ``simplejpeg`` runs the fast path with OpenCV's slower decode."""
    return f'simplejpeg {simplejpeg.__version__}' if simplejpeg is not None else f'OpenCV ({_NO_DECODER})'


def opencv_pixel_limit() -> Optional[int]:
    """The most pixels ``cv2.imdecode`` decodes (an image of more is an error there), or None when the
    environment sets a limit this function cannot read the way OpenCV would."""
    value = os.environ.get(_PIXEL_LIMIT_ENV)
    if value is None:
        return _PIXEL_LIMIT_DEFAULT
    digits = len(value) - len(value.lstrip('0123456789'))
    if digits == 0 or value[digits:] not in _LIMIT_UNITS:
        return None
    return int(value[:digits]) * _LIMIT_UNITS[value[digits:]]


def is_jpeg(buf: bytes) -> bool:
    """Whether ``buf`` starts with a JPEG start-of-image marker."""
    return len(buf) > 3 and buf[0] == 0xFF and buf[1] == _SOI


def exif_orientation(buf: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG, 1 when it has none, ``-1`` when the metadata cannot be read or its
    first APP1 segment is not EXIF (OpenCV would read that one).

    Walks the marker segments up to the first start-of-scan, where metadata ends.
    """
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            return _UNKNOWN
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (_SOS, _EOI):
            return 1
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length field
            pos += 2
            continue
        length = int.from_bytes(buf[pos + 2:pos + 4], 'big')
        if length < 2:
            return _UNKNOWN
        if marker == _APP1:
            # OpenCV reads the first APP1 segment as EXIF whatever its header says: with another header (XMP,
            # a damaged one) what it applies is not known here
            if buf[pos + 4:pos + 10] != _EXIF_HEADER:
                return _UNKNOWN
            return _tiff_orientation(buf[pos + 10:pos + 2 + length])
        pos += 2 + length
    return _UNKNOWN


def file_orientation(path: Optional[str]) -> int:
    """The EXIF orientation of the JPEG at ``path`` (any mmengine file backend); 1 when it has none, is no JPEG
    or cannot be read: callers only use it to explain or flag, never to decide how to decode."""
    from mmengine import fileio
    try:
        return max(exif_orientation(fileio.get(path)), 1)
    except Exception:  # noqa: BLE001 - a file that cannot be read is reported by the loader itself
        return 1


# What OpenCV's IMREAD_COLOR (and so mmpose's LoadImage) does to the stored pixels for each EXIF orientation.
ORIENTATION_TURNS = {2: 'mirrored left to right', 3: 'turned 180 degrees', 4: 'mirrored top to bottom',
                     5: 'transposed (mirrored about its main diagonal)', 6: 'turned 90 degrees clockwise',
                     7: 'transversed (mirrored about its other diagonal)', 8: 'turned 90 degrees counter-clockwise'}


def _tiff_orientation(tiff: bytes) -> int:
    """The orientation entry of a TIFF header's first IFD (EXIF payload), 1 if absent, -1 if unreadable."""
    if tiff[:2] == b'II':
        order = 'little'
    elif tiff[:2] == b'MM':
        order = 'big'
    else:
        return _UNKNOWN
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return _UNKNOWN
    count = int.from_bytes(tiff[ifd:ifd + 2], order)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return _UNKNOWN
        if int.from_bytes(tiff[entry:entry + 2], order) == _ORIENTATION_TAG:
            value = int.from_bytes(tiff[entry + 8:entry + 10], order)  # type SHORT: first 2 bytes of the value
            return value if 1 <= value <= 8 else _UNKNOWN
    return 1


def reproducible_shape(buf: bytes) -> Optional[Tuple[int, int]]:
    """The (height, width) of a JPEG whose libjpeg-turbo decode is OpenCV's, read from its header; None when the
    result could differ from OpenCV's (not a JPEG, EXIF orientation other than 1, a colour space libjpeg-turbo
    does not convert, more pixels than OpenCV accepts, a header ``simplejpeg`` cannot describe) or ``simplejpeg``
    is not installed. Data errors after the header are found only by decoding."""
    if simplejpeg is None or not is_jpeg(buf) or exif_orientation(buf) != 1:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(buf)
    except (ValueError, RuntimeError, KeyError):  # KeyError: a subsampling simplejpeg has no name for (4:4:1)
        return None
    limit = opencv_pixel_limit()
    if colorspace not in _SAME_AS_OPENCV or limit is None or height * width > limit:
        return None
    return height, width


def decode_jpeg_bgr(buf: bytes) -> Optional[np.ndarray]:
    """Decode a JPEG to a BGR image exactly as ``cv2.imdecode(buf, cv2.IMREAD_COLOR)`` would, or return None.

    Args:
        buf: the file's bytes.

    Returns:
        np.ndarray | None: (H, W, 3) uint8 BGR; None when :func:`reproducible_shape` declines the file,
        libjpeg-turbo warns about it (a truncated or corrupt file) or fails: decode it with OpenCV then (which
        also raises OpenCV's errors).
    """
    if reproducible_shape(buf) is None:
        return None
    try:
        # strict: a warning (e.g. a truncated file, which OpenCV may pad with grey) is an error here, so that
        # such files keep OpenCV's behaviour
        return simplejpeg.decode_jpeg(buf, colorspace='BGR', fastdct=False, fastupsample=False, strict=True)
    except (ValueError, RuntimeError, KeyError):
        return None


def decode_image_bgr(buf: bytes) -> Optional[np.ndarray]:
    """The (H, W, 3) uint8 BGR image that mmpose's ``LoadImage`` decodes from ``buf`` with its default settings:
    :func:`decode_jpeg_bgr` where that reproduces OpenCV, else OpenCV itself (``mmcv.imfrombytes``, which also
    decodes other formats); None where OpenCV decodes nothing. OpenCV's own errors propagate."""
    img = decode_jpeg_bgr(buf)
    return img if img is not None else mmcv.imfrombytes(buf, flag='color', backend='cv2')

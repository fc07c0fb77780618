"""Decoding only the part of a JPEG that a top-down crop reads: ``IPRLoadImage(decode_region=True)``.

A training sample's whole 640x480 JPEG decode is most of its CPU cost (``BENCHMARKS.md``: 1.09 of 1.74 ms per
sample, 2-core CPU), while its warp reads one person's box. With ``decode_region``, ``IPRLoadImage`` reads the file
and its header only and leaves a :class:`DeferredJpeg` in ``results['img_deferred']`` (no ``img``);
``IPRRandomFlip`` records a left-right flip on it; ``IPRTopdownAffine`` computes the source box its warp reads
(:func:`warp_source_box`), has libjpeg-turbo decode those rows and column blocks (``_jpeg_region.c``) into a zero
canvas of the image's size, and warps the canvas. The warp reads only decoded pixels, which equal a full decode's,
so its output is the same as from the whole image (``tests/test_jpeg_region.py`` compares them).

Between the loader and ``IPRTopdownAffine`` only transforms that do not read the image may run
(``load_image.deferred_decode_problem``, checked by ``IPRCocoDataset`` as it loads, by ``IPRLoadImage`` once per
pipeline of the dataset that hands it samples, and by the benchmark's pipeline measurement). ``IPRLoadImage``
defers only where it finds itself in the top level of that pipeline; run anywhere else (inside a wrapper
transform, or with no dataset in the sample, as ``tools/check_data.py`` runs it) it decodes whole images. Code that
needs the pixels of a deferred sample calls :meth:`DeferredJpeg.full`.

The whole image is decoded, as ``IPRLoadImage`` decodes it otherwise, where the region decoder was not built or
fails its check, where the warp reads no pixel of the image (so that a file OpenCV cannot decode still fails), for
a file libjpeg-turbo warns about in the part of it that it reads (a baseline file down to the crop's last row, a
progressive file all of it), and for a progressive file whose coefficients are not all refined (libjpeg smooths
its blocks across the crop's edges). ``IPRLoadImage`` defers only files whose last two bytes are the end-of-image
marker, so that a cut file, which OpenCV refuses, is not read only down to its crop. Damage below the crop's last
row of a baseline file is not read at all: ``tools/check_data.py`` decodes every image whole.
"""
import functools
from typing import Optional, Tuple

import cv2
import numpy as np

from .jpeg import decode_image_bgr

try:  # built by setup.py where libjpeg-turbo's headers are installed; optional
    from . import _jpeg_region
except ImportError:  # pragma: no cover - depends on the build
    _jpeg_region = None

# Pixels decoded beyond the box the warp reads (warp_source_box already reaches one pixel past the output's corners,
# bilinear interpolation's second sample): a cropped edge's pixels can differ from a full decode's (its chroma
# upsampling lacks the outer neighbour), and the warp rounds coordinates in fixed point. Pixels at least MARGIN
# inside a decoded box are exact (decode_region_bgr).
MARGIN = 4

Box = Tuple[int, int, int, int]  # top, bottom, left, right: rows [top, bottom), columns [left, right), pixels


@functools.lru_cache(maxsize=None)
def region_decoding_available() -> bool:
    """Whether the extension is built and, on a made-up 4:2:0 image, its region equals a full decode's pixels
    (checked once per process, so that a libjpeg that decodes differently from OpenCV's is never used)."""
    if _jpeg_region is None:
        return False
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), (5, 5), 0)
    data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    box = (5, 30, 9, 41)
    inner = (slice(box[0] + MARGIN, box[1] - MARGIN), slice(box[2] + MARGIN, box[3] - MARGIN))
    for mirror in (False, True):
        region = decode_region_bgr(data, full.shape[:2], box, mirror)
        expected = full[:, ::-1] if mirror else full
        if region is None or not np.array_equal(region[inner], expected[inner]):
            return False
    return True


def region_decoder() -> str:
    """What decodes training crops' regions, for the machine line of a report."""
    if not region_decoding_available():
        return 'none (whole images)' if _jpeg_region is None else 'none (failed its check: whole images)'
    return _jpeg_region.library_version()


def region_decoder_missing() -> str:
    """Why training crops' regions are not decoded here, and what mends it (for the loader's warning)."""
    if _jpeg_region is None:
        return ("the C region decoder is not built: where libjpeg-turbo's headers are installed (Debian/Ubuntu: "
                'libjpeg-dev), reinstall the package, or run `python setup.py build_ext --inplace` in a checkout')
    return 'the C region decoder failed its check against a full decode at start-up'


def warp_source_box(warp_mat: np.ndarray, output_size: Tuple[int, int], shape: Tuple[int, int],
                    margin: int = MARGIN) -> Optional[Box]:
    """The box of source pixels ``cv2.warpAffine(img, warp_mat, output_size)`` reads, widened by ``margin``.

    Args:
        warp_mat: (2, 3) float, source to output pixel coordinates, as ``TopdownAffine`` passes it.
        output_size: (width, height) of the output, pixels.
        shape: (height, width) of the source image, pixels.
        margin: pixels added on each side, then clipped to the image.

    Returns:
        (top, bottom, left, right) | None: None when the warp reads no pixel of the image.
    """
    width, height = output_size
    inverse = cv2.invertAffineTransform(np.asarray(warp_mat, np.float64))
    corners = np.array([[-1, -1, 1], [width, -1, 1], [-1, height, 1], [width, height, 1]], np.float64)
    source = corners @ inverse.T  # (4, 2): x, y of the output's outer corners in the source
    if not np.isfinite(source).all():
        return (0, shape[0], 0, shape[1])
    source = np.clip(source, -2.0 ** 40, 2.0 ** 40)  # far beyond any image; int64 stays exact
    left, top = np.floor(source.min(0)).astype(np.int64) - margin
    right, bottom = np.ceil(source.max(0)).astype(np.int64) + margin + 1
    top, left = max(int(top), 0), max(int(left), 0)
    bottom, right = min(int(bottom), shape[0]), min(int(right), shape[1])
    return (top, bottom, left, right) if top < bottom and left < right else None


def decode_region_bgr(data: bytes, shape: Tuple[int, int], box: Box, mirror: bool) -> Optional[np.ndarray]:
    """A (H, W, 3) uint8 BGR canvas of the image's size with the JPEG's pixels in ``box``, or None.

    Pixels at least ``MARGIN`` inside the box's edges equal a full decode's; rows outside the box are zeros, and
    within its rows the column blocks libjpeg-turbo decodes beside it hold decoded pixels, the others zeros.

    Args:
        data: the JPEG's bytes.
        shape: (height, width) of the image.
        box: (top, bottom, left, right) in the canvas's columns, not empty.
        mirror: the canvas is the left-right mirrored image.

    Returns:
        np.ndarray | None: None when the extension is missing, libjpeg-turbo fails or warns on the part of the
        file it reads (a corrupt file), or the file is a progressive one with unrefined coefficients: decode it
        whole then.
    """
    if _jpeg_region is None:
        return None
    canvas = np.zeros((shape[0], shape[1], 3), np.uint8)
    top, bottom, left, right = box
    if mirror:  # the file's columns of the mirrored box
        left, right = shape[1] - right, shape[1] - left
    try:
        warnings = _jpeg_region.decode_into(data, canvas, top, bottom, left, right, mirror)
    except ValueError:
        return None
    return canvas if warnings == 0 else None


class DeferredJpeg:
    """A JPEG read but not decoded yet, and the left-right flips applied to it so far.

    Args:
        data: the file's bytes.
        path: the file, for error messages.
        shape: (height, width) from its header.
    """

    def __init__(self, data: bytes, path: str, shape: Tuple[int, int]) -> None:
        self.data, self.path, self.shape = data, path, shape
        self.mirror = False

    def __repr__(self) -> str:
        return f'DeferredJpeg({self.path!r}, shape={self.shape}, mirror={self.mirror})'

    def canvas_for(self, box: Optional[Box]) -> np.ndarray:
        """The image (mirrored if flipped) with only ``box`` decoded, or the whole image where that fails or
        ``box`` is None (nothing read: decoding it all still fails on a file OpenCV cannot decode)."""
        canvas = None
        if box is not None and region_decoding_available():
            canvas = decode_region_bgr(self.data, self.shape, box, self.mirror)
        return canvas if canvas is not None else self.full()

    def full(self) -> np.ndarray:
        """The whole image as ``IPRLoadImage`` decodes it (mirrored if flipped, contiguous).

        Raises:
            ValueError: the file's data cannot be decoded (its header could).
        """
        img = decode_image_bgr(self.data)
        if img is None:
            raise ValueError(f'failed to load image: {self.path} (its JPEG header reads, its data does not decode)')
        return cv2.flip(img, 1) if self.mirror else img


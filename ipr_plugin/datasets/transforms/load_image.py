"""``LoadImage`` with the pixel-identical libjpeg-turbo decoder of :mod:`.jpeg`, reuse of the last image, and
decoding deferred to the crop (:mod:`.jpeg_region`)."""
import logging
import os
from typing import Any, Hashable, Optional, Sequence, Tuple

import numpy as np
from mmengine import fileio
from mmengine.logging import print_log
from mmpose.datasets.transforms import (GetBBoxCenterScale, KeypointConverter, LoadImage, RandomBBoxTransform,
                                       RandomHalfBody)
from mmpose.registry import TRANSFORMS
from torch.utils.data import get_worker_info

from .jpeg import decode_image_bgr, fast_jpeg_available, reproducible_shape
from .jpeg_region import DeferredJpeg, region_decoder_missing, region_decoding_available
from .random_flip import IPRRandomFlip
from .topdown_affine import IPRTopdownAffine


@TRANSFORMS.register_module()
class IPRLoadImage(LoadImage):
    """mmpose's ``LoadImage``, decoding JPEGs with :func:`decode_jpeg_bgr` (same pixels, less overhead).

    Same arguments, keys and errors as ``LoadImage`` (except with ``decode_region``, below). The fast decoder only
    replaces what it would reproduce exactly: OpenCV's default colour decode (``color_type='color'``,
    ``imdecode_backend='cv2'``, uint8, no ``to_float32``). An image it declines (see :func:`decode_jpeg_bgr`) is
    decoded from the bytes already read as ``LoadImage`` would decode it (:func:`decode_image_bgr`:
    ``mmcv.imfrombytes``); any other setting and any read or decode failure
    take ``LoadImage``'s own path, so a missing or corrupt file is reported by mmpose as before.

    Args:
        reuse_last (bool): Keep the last image loaded and hand it out again when the next sample names the same
            file (same path, size and modification time). A top-down test pipeline runs once per detector box,
            and mmpose's COCO person detections give each val image about 20-30 boxes, in file order
            (29.5 per image on the four-image COCO sample), so this decodes each image once instead of once per
            box (once per process under DDP, where mmengine's sampler deals the samples to the processes in turn,
            and once more where a batch boundary splits an image's boxes between loader workers). The array is
            then shared by those samples, so it is marked read-only: a later transform that
            writes into it in place fails with NumPy's error instead of corrupting the next sample (mmpose's
            test-time transforms only read it). Default False (every sample loads its own copy).
        decode_region (bool): Read the file and its header here, and leave the decoding to ``IPRTopdownAffine``,
            which decodes only the rows and column blocks its warp reads (same output pixels; see
            :mod:`.jpeg_region`). ``results`` then carry ``img_deferred`` instead of ``img`` until then, so only
            transforms that do not read the image may come between: ``GetBBoxCenterScale``, ``IPRRandomFlip``,
            ``RandomHalfBody``, ``(IPR)RandomBBoxTransform`` and ``KeypointConverter``
            (:func:`deferred_decode_problem`: ``IPRCocoDataset`` checks its pipeline as it loads, and this
            transform the pipeline of the dataset that hands it a sample, which covers any mmpose dataset, dataset
            wrappers (``CombinedDataset``, ``RepeatDataset``) and pipelines replaced during a run). It defers only
            where it can check that: in the top level of the pipeline of the dataset in ``results['dataset']``,
            where mmpose's datasets put themselves. Elsewhere (nested in a wrapper transform such as
            ``RandomApply``, or run without a dataset: a pipeline called by itself, ``tools/check_data.py``) it
            decodes whole images; inside a wrapper transform, or in a DataLoader worker handed samples without
            their dataset, it logs a warning (once per process: one line per loader worker). Decoded here as
            without it: files the fast decoder would not reproduce (see :func:`reproducible_shape`), files whose
            last two bytes are not the end-of-image marker (a cut file, or bytes after the marker), and every file
            where the region decoder or ``simplejpeg`` is missing, or these settings are not the defaults the fast
            decoder reproduces (a warning then says why). A file whose data cannot be decoded fails in
            ``IPRTopdownAffine``, with a ``ValueError`` naming it. Default False.
        **kwargs: ``LoadImage``'s arguments.
    """

    def __init__(self, reuse_last: bool = False, decode_region: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fast_decode = (fast_jpeg_available() and self.color_type == 'color' and not self.to_float32
                            and self.imdecode_backend == 'cv2' and self.file_client_args is None)
        if reuse_last and decode_region:
            raise ValueError('IPRLoadImage: reuse_last shares a whole decoded image between samples and '
                             'decode_region decodes a part per sample; set one of them')
        self.reuse_last = reuse_last
        self.decode_region = decode_region
        self._last: Optional[Tuple[Hashable, np.ndarray]] = None
        self._checked_pipeline = None  # the last dataset pipeline found fit for deferred decoding
        self._warned = False  # see _warn_decoding_whole
        if decode_region and not (self.fast_decode and region_decoding_available()):
            why = (region_decoder_missing() if self.fast_decode else
                   'simplejpeg is not installed' if not fast_jpeg_available() else
                   'color_type, to_float32, imdecode_backend or file_client_args is not the default')
            print_log(f'IPRLoadImage(decode_region=True) decodes whole images here ({why}): the same results, '
                      'more slowly', logger='current', level=logging.WARNING)

    def transform(self, results: dict) -> Optional[dict]:
        path = results.get('img_path') if 'img' not in results else None
        if not path:
            return super().transform(results)
        key = _file_key(path) if self.reuse_last else None
        if key is not None and self._last is not None and self._last[0] == key:
            results['img'] = self._last[1]  # LoadImage's branch for a given image sets the shapes
            return super().transform(results)
        defer = self.decode_region and self._may_defer(results.get('dataset'))
        if self.fast_decode:
            img_bytes = self._read(path)
            if defer and img_bytes is not None and self._defer(path, img_bytes, results):
                return results
            img = None if img_bytes is None else self._decode(img_bytes)
            if img is not None:
                results['img'] = img
        results = super().transform(results)
        if key is not None and results is not None:  # None: an empty file with ignore_empty, as LoadImage gives
            results['img'].flags.writeable = False
            self._last = (key, results['img'])
        return results

    def _may_defer(self, dataset: Any) -> bool:
        """Whether this transform sits in the top level of the pipeline of ``dataset`` (which mmpose's datasets
        put in every sample), where :func:`deferred_decode_problem` can tell what runs between it and
        ``IPRTopdownAffine``. An accepted pipeline is checked once per pipeline object; otherwise each sample looks
        again, and in a run (a wrapper transform, or a DataLoader worker handed samples without their dataset) the
        first one logs a warning.

        Raises:
            ValueError: that pipeline has a transform reading the image before ``IPRTopdownAffine`` decodes it,
                naming the dataset and the transform.
        """
        pipeline = getattr(dataset, 'pipeline', None)
        if pipeline is not None and pipeline is self._checked_pipeline:
            return True
        transforms = list(getattr(pipeline, 'transforms', None) or [])
        if not any(step is self for step in transforms):
            if pipeline is not None:
                self._warn_decoding_whole(
                    f'is not in the top level of the pipeline of {type(dataset).__name__} (inside a wrapper '
                    'transform?)', 'move it to the top level')
            elif get_worker_info() is not None:  # in the main process: a pipeline called by itself, most likely
                self._warn_decoding_whole(
                    "got a sample without results['dataset'] (its dataset does not put itself there, as mmpose's "
                    'do)', "set results['dataset'] = self in the dataset's prepare_data")
            return False
        problem = deferred_decode_problem(transforms)
        if problem:
            raise ValueError(f'{type(dataset).__name__}: {problem}')
        self._checked_pipeline = pipeline
        return True

    def _warn_decoding_whole(self, why: str, fix: str) -> None:
        """Say once per process (each DataLoader worker has its own copy of this transform) why whole images are
        decoded, and how to have them decoded by region."""
        if not self._warned:
            self._warned = True
            print_log(f'IPRLoadImage(decode_region=True) {why}, so it cannot check what reads the image before '
                      f'IPRTopdownAffine: it decodes whole images ({fix}, or set decode_region=False)',
                      logger='current', level=logging.WARNING)

    def _read(self, path: str) -> Optional[bytes]:
        """The file's bytes, or None where it cannot be read (LoadImage then reads again and reports it)."""
        try:
            return fileio.get(path, backend_args=self.backend_args)
        except Exception:  # noqa: BLE001 - reported by LoadImage, in its words
            return None

    def _defer(self, path: str, img_bytes: bytes, results: dict) -> bool:
        """Put the file's bytes in ``results['img_deferred']`` and its shapes where ``LoadImage`` puts them;
        False (nothing changed) where the region decoder is missing, the file is not a JPEG the fast decoder
        reproduces, or its last two bytes are not the end-of-image marker."""
        if not region_decoding_available():
            return False
        shape = reproducible_shape(img_bytes)
        # a cut file, which OpenCV refuses, is decoded whole rather than down to a crop above the cut
        if shape is None or not img_bytes.endswith(_EOI_BYTES):
            return False
        results['img_deferred'] = DeferredJpeg(img_bytes, path, shape)
        results['img_shape'] = results['ori_shape'] = shape
        return True

    def _decode(self, img_bytes: bytes):
        """The image in ``img_bytes`` (``fast_decode``: LoadImage's default settings), or None if decoding fails
        (LoadImage then reads and reports it)."""
        try:
            return decode_image_bgr(img_bytes)
        except Exception:  # noqa: BLE001 - LoadImage reads again and reports the failure in its words
            return None


_EOI_BYTES = b'\xff\xd9'


def _file_key(path: str) -> Optional[Hashable]:
    """Identity of a local file's content for reuse: (path, inode, size, mtime, ctime); None where it cannot be
    told (a missing file, a remote URI), so such a sample is simply loaded. The change time is there because a
    copy that keeps times (``cp -p``, ``rsync -t``, ``tar x``) can give new content the old size and mtime."""
    try:
        stat = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


# transforms that do not read results['img'], which may come between IPRLoadImage(decode_region=True) and
# IPRTopdownAffine
_PIXEL_FREE = (GetBBoxCenterScale, IPRRandomFlip, RandomHalfBody, RandomBBoxTransform, KeypointConverter)


def deferred_decode_problem(transforms: Sequence) -> Optional[str]:
    """Why a pipeline's ``IPRLoadImage(decode_region=True)`` would leave a later transform without its image, or
    None. Every transform after such a loader up to the next ``IPRTopdownAffine`` must be one that does not read
    the image (:data:`_PIXEL_FREE`), and an ``IPRTopdownAffine`` must follow.

    Args:
        transforms: the pipeline's transform objects, in order (``Compose.transforms``).
    """
    for i, step in enumerate(transforms):
        if not (isinstance(step, IPRLoadImage) and step.decode_region):
            continue
        later = list(transforms[i + 1:])
        decoder = next((j for j, t in enumerate(later) if isinstance(t, IPRTopdownAffine)), None)
        if decoder is None:
            return ('IPRLoadImage(decode_region=True) leaves the image undecoded for an IPRTopdownAffine, and none '
                    'follows it (TopdownAffine needs the image): use IPRTopdownAffine, or set decode_region=False')
        for between in later[:decoder]:
            if not isinstance(between, _PIXEL_FREE):
                return (f'{type(between).__name__} comes between IPRLoadImage(decode_region=True), which leaves the '
                        'image undecoded, and IPRTopdownAffine, which decodes the part it warps: move it after '
                        'IPRTopdownAffine, or set decode_region=False')
    return None

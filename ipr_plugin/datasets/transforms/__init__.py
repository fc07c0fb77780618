"""Drop-in replacements for mmpose's data transforms that compute the same results with less CPU time.

Each is a subclass registered in mmpose's ``TRANSFORMS`` under an ``IPR`` name, takes the original's
arguments and is tested against it (``tests/test_transforms.py``; the deferred decoding of ``IPRLoadImage`` and
``IPRTopdownAffine``: ``tests/test_jpeg_region.py``, and where it applies: ``tests/test_jpeg_region_pipeline.py``):

- :class:`IPRLoadImage`: JPEGs decoded by libjpeg-turbo directly (``simplejpeg``), pixel-identical to OpenCV,
  and optionally one decode shared by consecutive samples of a file (a test pipeline's detector boxes), or the
  decoding left to :class:`IPRTopdownAffine`, which decodes only the part of the image its warp reads;
- :class:`IPRRandomFlip`: the flipped image made contiguous by ``cv2.flip`` instead of by the next transform;
- :class:`IPRRandomBBoxTransform`: the same truncated-normal draws without scipy's per-call overhead;
- :class:`IPRTopdownAffine`: ``TopdownAffine``, decoding what it warps of an image ``IPRLoadImage`` deferred;
- :class:`IPRPackInputs`: the image packed without a transpose (channels-last strides).
"""
from .jpeg import ORIENTATION_TURNS, decode_jpeg_bgr, exif_orientation, fast_jpeg_available, file_orientation
from .jpeg_region import region_decoder, region_decoding_available
from .load_image import IPRLoadImage, deferred_decode_problem
from .pack_inputs import IPRPackInputs
from .random_bbox_transform import IPRRandomBBoxTransform, truncated_normal
from .random_flip import IPRRandomFlip, contiguous_flip
from .topdown_affine import IPRTopdownAffine

__all__ = ['IPRLoadImage', 'IPRPackInputs', 'IPRRandomBBoxTransform', 'IPRRandomFlip', 'IPRTopdownAffine',
           'contiguous_flip', 'decode_jpeg_bgr', 'deferred_decode_problem', 'region_decoder',
           'region_decoding_available', 'exif_orientation', 'fast_jpeg_available', 'file_orientation',
           'ORIENTATION_TURNS', 'truncated_normal']

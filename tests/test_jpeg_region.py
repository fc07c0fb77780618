"""Deferred, region-only JPEG decoding (IPRLoadImage(decode_region=True) + IPRTopdownAffine) gives the samples
that decoding whole images gives: on real COCO images, other encodings, flips, rotations and damaged files."""
import random
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from mmengine.dataset import Compose
from mmpose.registry import TRANSFORMS
from mmpose.utils import register_all_modules
from PIL import Image

import ipr_plugin  # noqa: F401
from ipr_plugin.datasets.transforms import region_decoder, region_decoding_available
from ipr_plugin.datasets.transforms.jpeg_region import MARGIN, decode_region_bgr, warp_source_box

from test_transforms import _exif, _jpeg, _png

# what a file that does not decode raises: mmpose's LoadImage an AssertionError (mmcv's imfrombytes gives None),
# the region decoder a ValueError where the header reads and the data does not
LOAD_ERRORS = (AssertionError, ValueError)

ENCODINGS = {
    '4:2:0': dict(quality=90, subsampling=2),
    '4:2:2': dict(quality=90, subsampling=1),
    '4:4:4': dict(quality=95, subsampling=0),
    'progressive': dict(quality=85, subsampling=2, progressive=True),
    'optimized': dict(quality=75, optimize=True),
}


@pytest.fixture(scope='module')
def coco_image(coco_sample):
    return Image.open(coco_sample / '000000000785.jpg').convert('RGB')


def _variant(image: Image.Image, name: str) -> bytes:
    if name == 'gray':
        return _jpeg(image.convert('L'), quality=90)
    if name == 'odd size':  # not a multiple of the 16-pixel blocks
        return _jpeg(image.resize((333, 251)), quality=90, subsampling=2)
    return _jpeg(image, **ENCODINGS[name])


# where libjpeg's headers are missing setup.py builds no decoder, and the deferred path decodes whole images (the
# tests comparing samples still run); where they are there, a missing decoder is a failure
HEADERS = any(Path(folder, 'jpeglib.h').exists() for folder in ('/usr/include', '/usr/local/include'))
needs_decoder = pytest.mark.skipif(not HEADERS and not region_decoding_available(),
                                   reason="no libjpeg headers here: setup.py builds no region decoder")


@needs_decoder
def test_the_region_decoder_is_built_and_passes_its_check():
    assert region_decoding_available(), 'setup.py builds _jpeg_region where libjpeg-turbo >= 1.5 headers exist'
    assert region_decoder().startswith('libjpeg-turbo ')


@needs_decoder
@pytest.mark.parametrize('name', [*ENCODINGS, 'gray', 'odd size'])
@pytest.mark.parametrize('mirror', [False, True])
def test_a_region_holds_the_full_decodes_pixels(coco_image, name, mirror):
    data = _variant(coco_image, name)
    full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    expected = full[:, ::-1] if mirror else full
    height, width = full.shape[:2]
    rng = np.random.default_rng(0)
    for _ in range(40):
        top, left = int(rng.integers(0, height - 1)), int(rng.integers(0, width - 1))
        box = (top, int(rng.integers(top + 1, height + 1)), left, int(rng.integers(left + 1, width + 1)))
        canvas = decode_region_bgr(data, (height, width), box, mirror)
        inner = (slice(box[0] + MARGIN, box[1] - MARGIN), slice(box[2] + MARGIN, box[3] - MARGIN))
        np.testing.assert_array_equal(canvas[inner], expected[inner], err_msg=str(box))
        assert not canvas[:box[0]].any() and not canvas[box[1]:].any()  # rows outside are not decoded


def test_the_warp_reads_only_the_source_box():
    """Pixels outside warp_source_box never change cv2.warpAffine's output, for boxes in, across and out of it."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    # a crop of a box 1e20 pixels wide: its corners lie beyond int64 (the output's middle still reads pixel 0, 0)
    huge = np.array([[1e-20, 0, 32], [0, 1e-20, 24]])
    for i in range(301):
        angle, scale = rng.uniform(-180, 180), rng.uniform(0.2, 4)
        warp_mat = cv2.getRotationMatrix2D((rng.uniform(-60, 220), rng.uniform(-60, 180)), angle, scale)
        warp_mat[:, 2] += rng.uniform(-100, 100, 2)
        warp_mat = huge if i == 300 else warp_mat
        box = warp_source_box(warp_mat, (64, 48), image.shape[:2], margin=1)
        other = rng.integers(0, 256, image.shape, dtype=np.uint8)
        if box is not None:
            other[box[0]:box[1], box[2]:box[3]] = image[box[0]:box[1], box[2]:box[3]]
        np.testing.assert_array_equal(cv2.warpAffine(other, warp_mat, (64, 48), flags=cv2.INTER_LINEAR),
                                      cv2.warpAffine(image, warp_mat, (64, 48), flags=cv2.INTER_LINEAR))


def _dataset_running(steps: Compose) -> SimpleNamespace:
    """What mmpose's datasets put in ``results['dataset']`` as far as the loader reads it: the dataset whose
    pipeline runs the sample (the loader defers decoding only where it finds itself in that pipeline)."""
    return SimpleNamespace(pipeline=steps)


def _load(path, **loader) -> dict:
    """The results of a deferring loader run in a pipeline that decodes in IPRTopdownAffine."""
    register_all_modules()
    steps = Compose([dict(type='IPRLoadImage', decode_region=True, **loader),
                     dict(type='IPRTopdownAffine', input_size=(192, 256))])
    return steps.transforms[0](dict(img_path=str(path), dataset=_dataset_running(steps)))


def _train_steps(decode_region: bool, direction: str = 'horizontal') -> Compose:
    """The fast config's training steps that touch the image (RandomHalfBody, which reads keypoints only, aside)."""
    register_all_modules()
    return Compose([dict(type='IPRLoadImage', decode_region=decode_region), dict(type='GetBBoxCenterScale'),
                    dict(type='IPRRandomFlip', direction=direction, prob=0.5),
                    dict(type='IPRRandomBBoxTransform'), dict(type='IPRTopdownAffine', input_size=(192, 256))])


def _samples(path, decode_region: bool, direction: str = 'horizontal', draws: int = 24, skip: int = 0,
             far_away: bool = False) -> list:
    """Samples of random person boxes (inside, across and outside the image's edges) with random augmentation;
    ``skip``: start at that draw; ``far_away``: boxes far outside the image."""
    steps, rng = _train_steps(decode_region, direction), np.random.default_rng(2)
    out = []
    for seed in range(skip + draws):
        x, y = rng.uniform(-80, 600), rng.uniform(-80, 420)
        if far_away:
            x, y = x + 1e5, y + 1e5
        bbox = np.array([[x, y, x + rng.uniform(4, 400), y + rng.uniform(4, 400)]], np.float32)
        if seed < skip:
            continue
        keypoints = rng.uniform((x, y), bbox[0, 2:], (1, 17, 2)).astype(np.float32)
        random.seed(seed), np.random.seed(seed)
        out.append(steps(dict(img_path=str(path), bbox=bbox, bbox_score=np.ones(1, np.float32),
                              keypoints=keypoints, keypoints_visible=np.ones((1, 17), np.float32),
                              flip_indices=list(range(17)), dataset=_dataset_running(steps))))
    return out


def _assert_same(ref: list, out: list) -> None:
    for a, b in zip(ref, out):
        assert 'img_deferred' not in b and set(a) == set(b)
        for key in set(a) - {'dataset'}:
            np.testing.assert_array_equal(np.asarray(b[key]), np.asarray(a[key]), err_msg=key)


@pytest.mark.parametrize('name', [*ENCODINGS, 'gray', 'odd size'])
def test_deferred_samples_equal_whole_image_samples(coco_image, tmp_path, name):
    path = tmp_path / 'image.jpg'
    path.write_bytes(_variant(coco_image, name))
    loaded = _load(path)
    assert 'img' not in loaded and loaded['img_deferred'].shape == loaded['img_shape'] == loaded['ori_shape']
    ref, out = _samples(path, False), _samples(path, True)
    assert any(s['flip'] for s in ref) and not all(s['flip'] for s in ref)
    _assert_same(ref, out)


@pytest.mark.parametrize('direction', ['horizontal', ['horizontal']])
def test_a_left_right_flip_is_recorded_on_the_deferred_image(coco_sample, direction):
    results = _load(coco_sample / '000000196141.jpg')
    results['bbox'] = np.array([[10., 20., 200., 300.]], np.float32)
    results = TRANSFORMS.build(dict(type='GetBBoxCenterScale'))(results)
    results = TRANSFORMS.build(dict(type='IPRRandomFlip', prob=1.0, direction=direction))(results)
    assert 'img' not in results and results['flip'] and results['img_deferred'].mirror


@pytest.mark.parametrize('direction', ['vertical', 'diagonal'])
def test_flips_that_need_the_pixels_decode_the_whole_image(coco_sample, direction):
    path = coco_sample / '000000196141.jpg'
    _assert_same(_samples(path, False, direction, draws=8), _samples(path, True, direction, draws=8))


def _unrefined_progressive(image: Image.Image) -> bytes:
    """A valid progressive JPEG that ends after its first three scans: libjpeg smooths its blocks."""
    data = _jpeg(image, quality=85, progressive=True)
    scans = [i for i in range(len(data) - 1) if data[i:i + 2] == b'\xff\xda']
    return data[:scans[3]] + b'\xff\xd9'


DAMAGED = ['truncated', 'corrupt scan', 'header only', 'header and end', 'unrefined progressive', 'rotated', 'png']


@pytest.mark.parametrize('case', DAMAGED)
def test_damaged_or_other_files_give_what_loadimage_gives(coco_image, tmp_path, case):
    """Files libjpeg-turbo warns about or smooths are decoded whole as OpenCV decodes them; files cut short and
    files the fast decoder does not reproduce are not deferred at all; where OpenCV decodes nothing, no draw gives
    a sample (boxes outside the image included)."""
    data = _jpeg(coco_image, quality=90)
    scan = data.index(b'\xff\xda')
    content = {'truncated': lambda: data[:len(data) * 4 // 5],
               'corrupt scan': lambda: data[:scan + 4000] + bytes(range(256)) * 4 + data[scan + 5024:],
               'header only': lambda: data[:scan + 20],
               'header and end': lambda: data[:scan + 20] + b'\xff\xd9',
               'unrefined progressive': lambda: _unrefined_progressive(coco_image),
               'rotated': lambda: _jpeg(coco_image, exif=_exif(x0112=6)),
               'png': lambda: _png(coco_image)}[case]()
    path = tmp_path / 'image.jpg'
    path.write_bytes(content)
    try:  # a file it does not defer is decoded (or refused) here
        deferred = 'img_deferred' in _load(path)
    except Exception:  # noqa: BLE001 - refused as LoadImage refuses it, below
        deferred = False
    assert deferred == (case in ('corrupt scan', 'header and end', 'unrefined progressive'))
    try:
        ref = _samples(path, False, draws=8)
    except Exception:  # noqa: BLE001 - OpenCV decodes nothing of it: neither path may give a sample
        for draw in range(8):
            with pytest.raises(LOAD_ERRORS, match=path.name):
                _samples(path, True, draws=1, skip=draw)
        with pytest.raises(LOAD_ERRORS, match=path.name):  # a box the warp reads nothing of
            _samples(path, True, draws=1, far_away=True)
        return
    _assert_same(ref, _samples(path, True, draws=8))
    if case == 'unrefined progressive':  # the region decoder refuses it rather than smoothing it differently
        assert decode_region_bgr(content, ref[0]['ori_shape'], (100, 200, 100, 200), False) is None


@pytest.mark.parametrize('case', ['scan header broken', '12-bit'])
def test_a_file_that_does_not_decode_is_reported_with_its_name(coco_image, tmp_path, case):
    """Whether or not the warp reads any of it: a crop outside the image still needs a decodable file."""
    data = _jpeg(coco_image, quality=90)
    if case == '12-bit':  # a precision this libjpeg build does not decode (the header still reads)
        content = bytearray(data)
        content[data.index(b'\xff\xc0') + 4] = 12
    else:
        scan = data.index(b'\xff\xda')
        content = data[:scan] + b'\xff\xda\x00\x02\x00\x00' + b'\x00' * 64 + b'\xff\xd9'
    path = tmp_path / 'broken.jpg'
    path.write_bytes(bytes(content))
    for far_away in (False, True):
        with pytest.raises(LOAD_ERRORS, match='broken.jpg'):
            _samples(path, True, draws=1, far_away=far_away)

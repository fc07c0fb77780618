"""The drop-in transforms give exactly what mmpose's originals give, on real COCO images and awkward files."""
import copy
import io
import os
import random

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpose.registry import DATASETS, TRANSFORMS
from mmpose.utils import register_all_modules
from PIL import Image

import ipr_plugin  # noqa: F401
from ipr_plugin.datasets.collate import ipr_collate
from ipr_plugin.datasets.transforms import contiguous_flip, decode_jpeg_bgr, exif_orientation, fast_jpeg_available
from ipr_plugin.datasets.transforms.jpeg import opencv_pixel_limit

FAST_CONFIG = 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'
PLAIN_CONFIG = 'configs/ipr_res50_8xb64-210e_coco-256x256.py'


@pytest.fixture(scope='module')
def coco_image(coco_sample):
    return Image.open(coco_sample / '000000000785.jpg').convert('RGB')


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, 'JPEG', **kwargs)
    return buf.getvalue()


def _exif(**tags) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag[1:], 16)] = value
    return exif.tobytes()


def test_simplejpeg_is_installed():
    assert fast_jpeg_available(), 'simplejpeg is a runtime requirement (setup.py); without it nothing is faster'


def test_real_coco_images_decode_to_opencvs_pixels(coco_sample):
    for path in sorted(coco_sample.glob('*.jpg')):
        buf = path.read_bytes()
        img = decode_jpeg_bgr(buf)
        assert img is not None, path
        np.testing.assert_array_equal(img, mmcv.imfrombytes(buf), err_msg=str(path))


@pytest.mark.parametrize('kwargs', [dict(subsampling=2, quality=75), dict(subsampling=1, quality=90),
                                    dict(subsampling=0, quality=95), dict(subsampling=2, progressive=True),
                                    dict(exif=_exif(x0112=1, x010f='camera')), dict(exif=_exif(x010f='camera'))],
                         ids=['420', '422', '444', 'progressive', 'exif-upright', 'exif-without-orientation'])
def test_encodings_decode_to_opencvs_pixels(coco_image, kwargs):
    buf = _jpeg(coco_image, **kwargs)
    img = decode_jpeg_bgr(buf)
    assert img is not None
    np.testing.assert_array_equal(img, mmcv.imfrombytes(buf))


def test_grayscale_jpeg_becomes_three_equal_channels_as_in_opencv(coco_image):
    buf = _jpeg(coco_image.convert('L'))
    img = decode_jpeg_bgr(buf)
    assert img.shape == coco_image.size[::-1] + (3, )
    np.testing.assert_array_equal(img, mmcv.imfrombytes(buf))


@pytest.mark.parametrize('case', ['rotated', 'cmyk', 'truncated', 'png', 'garbage'])
def test_files_it_would_not_reproduce_are_left_to_opencv(coco_image, case):
    buf = {
        'rotated': lambda: _jpeg(coco_image, exif=_exif(x0112=6)),  # OpenCV turns it upright
        'cmyk': lambda: _jpeg(coco_image.convert('CMYK')),
        'truncated': lambda: _jpeg(coco_image)[:20000],
        'png': lambda: _png(coco_image),
        'garbage': lambda: b'\xff\xd8 not really a jpeg' * 20,
    }[case]()
    assert decode_jpeg_bgr(buf) is None


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, 'PNG')
    return buf.getvalue()


@pytest.mark.parametrize('order', ['II', 'MM'])
def test_exif_orientation_is_read_in_both_byte_orders(order):
    endian = 'little' if order == 'II' else 'big'
    u16 = lambda v: v.to_bytes(2, endian)  # noqa: E731
    u32 = lambda v: v.to_bytes(4, endian)  # noqa: E731
    # TIFF header, IFD0 with a make entry then the orientation entry (SHORT, value 8)
    tiff = order.encode() + u16(42) + u32(8) + u16(2)
    tiff += u16(0x010F) + u16(2) + u32(4) + b'cam\x00'
    tiff += u16(0x0112) + u16(3) + u32(1) + u16(8) + b'\x00\x00' + u32(0)
    app1 = b'Exif\x00\x00' + tiff
    buf = b'\xff\xd8' + b'\xff\xe1' + (len(app1) + 2).to_bytes(2, 'big') + app1 + b'\xff\xda\x00\x02'
    assert exif_orientation(buf) == 8
    # OpenCV reads the first APP1 as EXIF whatever its header: with another one, the orientation is not known
    segment = b'\xff\xe1' + (len(app1) + 2).to_bytes(2, 'big') + app1.replace(b'Exif\x00\x00', b'Exif\x00\xff')
    image = _jpeg(Image.new('RGB', (8, 4)))
    damaged = image[:2] + segment + image[2:]
    assert exif_orientation(damaged) == -1 and decode_jpeg_bgr(damaged) is None
    if cv2.__version__.startswith('4.'):  # OpenCV 4 turned it (orientation 8); OpenCV 5 reads no EXIF there
        assert mmcv.imfrombytes(damaged).shape == (8, 4, 3)
    assert exif_orientation(b'\xff\xd8\xff\xda\x00\x02') == 1  # no metadata before the scan
    assert exif_orientation(b'\xff\xd8\x00\x00\x00\x00') == -1  # not a marker: unreadable


def _load(transform_type, path, **kwargs):
    transform = TRANSFORMS.build(dict(type=transform_type, **kwargs))
    return transform(dict(img_path=str(path)))


@pytest.mark.parametrize('case', ['real', 'rotated', 'truncated', 'png'])
def test_ipr_load_image_gives_load_images_results(coco_sample, coco_image, tmp_path, case):
    register_all_modules()
    path = coco_sample / '000000040083.jpg'
    if case != 'real':
        path = tmp_path / f'{case}.jpg'
        path.write_bytes({'rotated': lambda: _jpeg(coco_image, exif=_exif(x0112=6)),
                          'truncated': lambda: _jpeg(coco_image)[:60000],
                          'png': lambda: _png(coco_image)}[case]())
    ref, out = _load('LoadImage', path), _load('IPRLoadImage', path)
    assert set(ref) == set(out)
    np.testing.assert_array_equal(out['img'], ref['img'])
    assert out['img_shape'] == ref['img_shape'] == ref['img'].shape[:2]
    assert out['ori_shape'] == ref['ori_shape']


def test_ipr_load_image_names_a_corrupt_or_missing_file(tmp_path):
    register_all_modules()
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'\xff\xd8 not a jpeg' * 10)
    # as mmpose's LoadImage raises them, each naming the file
    for path, error in ((corrupt, AssertionError), (tmp_path / 'missing.jpg', FileNotFoundError)):
        with pytest.raises(error, match=path.name):
            _load('IPRLoadImage', path)


@pytest.mark.parametrize('reuse_last', [False, True])
def test_ipr_load_image_skips_an_empty_file_as_load_image_does_with_ignore_empty(tmp_path, reuse_last):
    register_all_modules()
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    assert _load('LoadImage', empty, ignore_empty=True) is None
    assert _load('IPRLoadImage', empty, ignore_empty=True, reuse_last=reuse_last) is None


def test_ipr_load_image_to_float32_gives_load_images_float_image(coco_sample):
    register_all_modules()
    path = str(coco_sample / '000000040083.jpg')
    ref = TRANSFORMS.build(dict(type='LoadImage', to_float32=True))(dict(img_path=path))
    out = TRANSFORMS.build(dict(type='IPRLoadImage', to_float32=True))(dict(img_path=path))
    assert out['img'].dtype == ref['img'].dtype == np.float32
    np.testing.assert_array_equal(out['img'], ref['img'])


def test_ipr_load_image_reuses_the_last_image_read_only(coco_sample, tmp_path):
    """One decode per file for consecutive samples of that file, the same pixels, and no silent sharing."""
    register_all_modules()
    reuse = TRANSFORMS.build(dict(type='IPRLoadImage', reuse_last=True))
    plain = TRANSFORMS.build(dict(type='LoadImage'))
    a, b = (str(tmp_path / name) for name in ('a.jpg', 'b.jpg'))
    for name in ('a.jpg', 'b.jpg'):
        (tmp_path / name).write_bytes((coco_sample / '000000040083.jpg').read_bytes())
    first, second, other = (reuse(dict(img_path=p, id=i)) for i, p in enumerate((a, a, b)))
    assert second['img'] is first['img'] and other['img'] is not first['img']
    for out in (first, second, other):
        np.testing.assert_array_equal(out['img'], plain(dict(img_path=a))['img'])
        assert out['img_shape'] == out['ori_shape'] == out['img'].shape[:2]
    with pytest.raises(ValueError, match='read-only'):
        second['img'][0, 0] = 0  # an in-place write would have reached the next sample of the file
    # a file rewritten under the same name is loaded again
    (tmp_path / 'b.jpg').write_bytes(_jpeg(Image.new('RGB', (32, 24), (200, 10, 10))))
    again = reuse(dict(img_path=b))
    assert again['img'] is not other['img'] and again['img'].shape[:2] == (24, 32)
    np.testing.assert_array_equal(again['img'], plain(dict(img_path=b))['img'])
    # new content of the same size given the old modification time (cp -p, rsync -t) is loaded again too
    stat = os.stat(b)
    green = _jpeg(Image.new('RGB', (32, 24), (10, 200, 10)))
    (tmp_path / 'b.jpg').write_bytes(green.ljust(stat.st_size, b'\0'))  # bytes after the end marker are ignored
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(b).st_size == stat.st_size and os.stat(b).st_mtime_ns == stat.st_mtime_ns
    swapped = reuse(dict(img_path=b))
    np.testing.assert_array_equal(swapped['img'], plain(dict(img_path=b))['img'])
    assert not np.array_equal(swapped['img'], again['img'])


def test_images_over_opencvs_pixel_limit_are_left_to_opencv(coco_image, monkeypatch):
    """cv2.imdecode refuses more pixels than OPENCV_IO_MAX_IMAGE_PIXELS (or 2**30): so must the fast path."""
    buf = _jpeg(coco_image)
    pixels = coco_image.width * coco_image.height
    for value, limit in (('', None), ('1M', None), ('1GB', None), ('100000', 100000), ('2MB', 2 << 20),
                         ('1Kb', 1024), (str(pixels), pixels)):
        monkeypatch.setenv('OPENCV_IO_MAX_IMAGE_PIXELS', value)
        assert opencv_pixel_limit() == limit, value  # OpenCV's own reading; None: unreadable, OpenCV decides
        assert (decode_jpeg_bgr(buf) is None) == (limit is None or pixels > limit), value
    monkeypatch.delenv('OPENCV_IO_MAX_IMAGE_PIXELS')
    assert opencv_pixel_limit() == 1 << 30


def test_a_subsampling_simplejpeg_cannot_name_is_left_to_opencv(coco_image):
    """simplejpeg's header reader raises KeyError on 4:4:1 (luma 1x4): decode_jpeg_bgr returns None instead."""
    buf = bytearray(_jpeg(coco_image, subsampling=0))
    sof = buf.index(b'\xff\xc0')
    assert buf[sof + 11] == 0x11  # the first component's sampling factors
    buf[sof + 11] = 0x14
    assert decode_jpeg_bgr(bytes(buf)) is None


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_ipr_random_flip_gives_random_flips_results_contiguously(coco_sample, direction):
    register_all_modules()
    loaded = _load('LoadImage', coco_sample / '000000196141.jpg')
    loaded.update(bbox=np.array([[10., 20., 200., 300.]], np.float32), flip_indices=list(range(17)),
                  keypoints=np.random.default_rng(0).uniform(0, 400, (1, 17, 2)).astype(np.float32),
                  keypoints_visible=np.ones((1, 17), np.float32))
    loaded = TRANSFORMS.build(dict(type='GetBBoxCenterScale'))(loaded)
    results = {}
    for kind in ('RandomFlip', 'IPRRandomFlip'):
        flip = TRANSFORMS.build(dict(type=kind, prob=1.0, direction=direction))
        results[kind] = flip(copy.deepcopy(loaded))
    ref, out = results['RandomFlip'], results['IPRRandomFlip']
    assert out['img'].flags['C_CONTIGUOUS'] and not ref['img'].flags['C_CONTIGUOUS']
    assert set(out) == set(ref)
    for key in ref:
        np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(ref[key]), err_msg=key)


def test_ipr_pack_inputs_packs_what_pack_pose_inputs_packs_without_a_transpose(coco_sample):
    register_all_modules()
    cfg = Config.fromfile(PLAIN_CONFIG)
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(coco_sample),
                                  ann_file='test_coco.json', data_prefix=dict(img=''),
                                  pipeline=cfg.train_dataloader.dataset.pipeline[:-1]))
    unpacked = [dataset[i] for i in range(4)]
    ref = [TRANSFORMS.build(dict(type='PackPoseInputs'))(copy.deepcopy(r)) for r in unpacked]
    out = [TRANSFORMS.build(dict(type='IPRPackInputs'))(copy.deepcopy(r)) for r in unpacked]
    for r, o in zip(ref, out):
        assert torch.equal(o['inputs'], r['inputs']) and o['inputs'].stride()[0] == 1  # channels-last view
        ref_meta, out_meta = r['data_samples'].metainfo, o['data_samples'].metainfo
        assert ref_meta.keys() == out_meta.keys() and 'raw_ann_info' in ref_meta
        for key, value in ref_meta.items():
            assert type(out_meta[key]) is type(value), key
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(out_meta[key], value, err_msg=key)
            else:
                assert out_meta[key] == value, key
        for name in ('gt_instances', 'gt_instance_labels'):
            a, b = r['data_samples'].get(name), o['data_samples'].get(name)
            assert a.keys() == b.keys()
            for key in a.keys():
                np.testing.assert_array_equal(np.asarray(b.get(key)), np.asarray(a.get(key)), err_msg=key)
    batch = ipr_collate(out)['inputs']
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, ipr_collate(ref)['inputs'])


@pytest.mark.parametrize('split', ['train', 'test'])
def test_fast_config_pipeline_gives_the_plain_pipelines_samples(coco_sample, split):
    """The fast config's whole pipeline against the main config's, same seeds, every sample of the COCO sample."""
    register_all_modules()
    samples = {}
    for name, config in (('plain', PLAIN_CONFIG), ('fast', FAST_CONFIG)):
        cfg = Config.fromfile(config)
        loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
        ds_cfg = dict(loader.dataset, data_root=str(coco_sample), ann_file='test_coco.json',
                      data_prefix=dict(img=''))
        if split == 'test':
            ds_cfg['bbox_file'] = str(coco_sample / 'test_coco_det_AP_H_56.json')
        dataset = DATASETS.build(ds_cfg)
        items = []
        for i in range(len(dataset)):
            for seed in (0, 1, 2):  # a few augmentation draws per instance, flipped and not
                random.seed(seed), np.random.seed(seed)
                items.append(dataset[i])
        samples[name] = items
    assert len(samples['plain']) == len(samples['fast']) >= 12
    flipped = 0
    for ref, out in zip(samples['plain'], samples['fast']):
        assert torch.equal(out['inputs'], ref['inputs'])
        flipped += bool(ref['data_samples'].metainfo.get('flip'))
        for name in ('gt_instances', 'gt_instance_labels'):
            a, b = ref['data_samples'].get(name), out['data_samples'].get(name)
            if a is None:
                continue
            for key in a.keys():
                np.testing.assert_array_equal(np.asarray(b.get(key)), np.asarray(a.get(key)), err_msg=key)
    assert split == 'test' or flipped > 0


@pytest.mark.parametrize('low, high', [(-1., 1.), (-2., 0.5), (0.5, 2.)])
def test_truncated_normal_draws_scipys_numbers(low, high):
    from scipy.stats import truncnorm

    from ipr_plugin.datasets.transforms import truncated_normal
    np.random.seed(7)
    ref = truncnorm.rvs(low, high, size=(5000, 4)).astype(np.float32)
    np.random.seed(7)
    out = truncated_normal(low, high, size=(5000, 4))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)
    after = np.random.uniform()  # the global stream advanced by one uniform per sample, as with scipy
    np.random.seed(7)
    assert after == np.random.uniform(size=5000 * 4 + 1)[-1]


def test_ipr_random_bbox_transform_gives_random_bbox_transforms_results():
    register_all_modules()
    start = dict(bbox_center=np.array([[120., 200.], [40., 50.]], np.float32),
                 bbox_scale=np.array([[60., 90.], [30., 30.]], np.float32))
    for seed in range(20):
        results = {}
        for kind in ('RandomBBoxTransform', 'IPRRandomBBoxTransform'):
            np.random.seed(seed)
            results[kind] = TRANSFORMS.build(dict(type=kind))(copy.deepcopy(start))
        for key in ('bbox_center', 'bbox_scale', 'bbox_rotation'):
            np.testing.assert_array_equal(results['IPRRandomBBoxTransform'][key],
                                          results['RandomBBoxTransform'][key], err_msg=key)


@pytest.mark.parametrize('name, image', [
    ('one channel', np.arange(48, dtype=np.uint8).reshape(4, 4, 3)[..., :1].copy()),
    ('int64 beyond int32', np.full((4, 6, 3), 2**40, dtype=np.int64) + np.arange(6)[:, None]),
    ('uint32', np.arange(72, dtype=np.uint32).reshape(4, 6, 3)),
    ('float16', np.linspace(0, 1, 72, dtype=np.float16).reshape(4, 6, 3)),
    ('600 channels', np.arange(4 * 6 * 600, dtype=np.float32).reshape(4, 6, 600))])
@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_contiguous_flip_keeps_shape_dtype_and_values_of_any_array(name, image, direction):
    """cv2.flip drops the axis of (H, W, 1), casts int64 to int32 and refuses uint32: numpy copies those."""
    view = mmcv.imflip(image, direction)
    out = contiguous_flip(view, direction)
    assert out.flags['C_CONTIGUOUS'] and out.shape == view.shape and out.dtype == view.dtype, name
    np.testing.assert_array_equal(out, view)

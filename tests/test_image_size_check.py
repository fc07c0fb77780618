"""An image that loads at another size than the annotation file says is refused, naming it; mmpose trains on it.

Real COCO sample images, rewritten in a temporary copy: one scaled down (a resized image folder), one stored with
an EXIF orientation that OpenCV applies while the annotation describes the pixels as stored.
"""
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmpose.registry import DATASETS
from mmpose.utils import register_all_modules
from PIL import Image

import ipr_plugin  # noqa: F401
from utils import writable_copy

PLAIN_CONFIG = 'configs/ipr_res50_8xb64-210e_coco-256x256.py'
FAST_CONFIG = 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'
DET_FILE = 'test_coco_det_AP_H_56.json'
IMAGE = '000000000785.jpg'  # 640x425 in test_coco.json


@pytest.fixture
def sample(coco_sample, tmp_path) -> Path:
    writable_copy(coco_sample, tmp_path / 'sample')
    return tmp_path / 'sample'


def _dataset(root: Path, config: str = PLAIN_CONFIG, split: str = 'train', **overrides):
    register_all_modules()
    cfg = Config.fromfile(config)
    loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
    ds_cfg = dict(loader.dataset, data_root=str(root), ann_file='test_coco.json', data_prefix=dict(img=''))
    if split == 'test':
        ds_cfg['bbox_file'] = str(root / DET_FILE)
    return DATASETS.build({**ds_cfg, **overrides})


def _indices_on(dataset, name: str) -> list:
    return [i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'].endswith(name)]


def _load_all(dataset) -> list:
    return [dataset[i] for i in range(len(dataset))]


def test_untouched_images_pass_every_config(coco_sample):
    for config in (PLAIN_CONFIG, FAST_CONFIG):
        for split in ('train', 'test'):
            dataset = _dataset(coco_sample, config, split)
            assert dataset.check_image_size and len(_load_all(dataset)) == len(dataset) > 0


@pytest.mark.parametrize('config, split', [(PLAIN_CONFIG, 'train'), (FAST_CONFIG, 'train'), (FAST_CONFIG, 'test')])
def test_a_resized_image_is_named_with_both_sizes(sample, config, split):
    with Image.open(sample / IMAGE) as image:
        image.resize((320, 212)).save(sample / IMAGE, quality=95)
    dataset = _dataset(sample, config, split)
    on_image = _indices_on(dataset, IMAGE)
    assert on_image and len(on_image) < len(dataset)
    for i in range(len(dataset)):
        if i not in on_image:
            dataset[i]  # the other images still load
    with pytest.raises(ValueError) as info:
        dataset[on_image[0]]
    message = str(info.value)
    for needle in (str(sample / IMAGE), 'id 785', 'loads as 320x212', 'gives 640x425', 'test_coco.json', 'resized'):
        assert needle in message, (needle, message)
    assert 'EXIF' not in message


def test_mmposes_own_dataset_and_check_image_size_false_load_the_resized_image(sample):
    """What the check adds: CocoDataset hands out the sample without a word, its keypoints off the person."""
    from mmpose.datasets import CocoDataset
    with Image.open(sample / IMAGE) as image:
        image.resize((320, 212)).save(sample / IMAGE, quality=95)
    dataset = _dataset(sample, type=CocoDataset.__name__)
    sample_ = dataset[_indices_on(dataset, IMAGE)[0]]
    assert sample_['data_samples'].metainfo['ori_shape'] == (212, 320)
    ours = _dataset(sample, check_image_size=False)
    assert ours[_indices_on(ours, IMAGE)[0]]['data_samples'].metainfo['ori_shape'] == (212, 320)


def _store_with_orientation(path: Path, orientation: int) -> np.ndarray:
    """Rewrite ``path`` with the same stored pixels and an EXIF orientation tag; returns the stored pixels."""
    with Image.open(path) as image:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as image:  # PIL ignores the tag: the pixels as stored
        return np.asarray(image.convert('RGB'))[..., ::-1]


@pytest.mark.parametrize('config', [PLAIN_CONFIG, FAST_CONFIG])
def test_an_exif_rotated_image_is_named_with_the_way_out(sample, config):
    stored = _store_with_orientation(sample / IMAGE, 6)
    assert stored.shape[:2] == (425, 640)
    dataset = _dataset(sample, config)
    i = _indices_on(dataset, IMAGE)[0]
    with pytest.raises(ValueError) as info:
        dataset[i]
    message = str(info.value)
    for needle in ('loads as 425x640', 'gives 640x425', 'EXIF orientation 6', "color_type='color_ignore_orientation'"):
        assert needle in message, (needle, message)
    # the way out the message gives: the stored pixels, which the annotation describes
    cfg = Config.fromfile(config)
    pipeline = [dict(step, color_type='color_ignore_orientation') if 'LoadImage' in step['type'] else step
                for step in cfg.train_dataloader.dataset.pipeline]
    loaded = _load_all(_dataset(sample, config, pipeline=pipeline))
    assert loaded[i]['data_samples'].metainfo['ori_shape'] == (425, 640)
    loader = {key: value for key, value in pipeline[0].items() if key != 'decode_region'}  # the loader alone
    unpacked = _dataset(sample, config, pipeline=[loader])[i]
    np.testing.assert_array_equal(unpacked['img'], stored)


def test_an_upright_tag_and_a_rotation_that_matches_the_annotation_pass(sample):
    """Orientation 1 changes nothing; a 180-degree turn keeps the size (undetectable, and OpenCV's as mmpose's)."""
    for orientation in (1, 3):
        _store_with_orientation(sample / IMAGE, orientation)
        dataset = _dataset(sample, FAST_CONFIG)
        assert len(_load_all(dataset)) == len(dataset)


def test_a_test_time_augmentation_pipeline_is_checked_per_packed_sample(sample):
    """mmcv's TestTimeAug packs a list of samples: each is checked (mmpose's CocoDataset hands the list out)."""
    tta = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
           dict(type='TestTimeAug', transforms=[[dict(type='RandomFlip', prob=0.), dict(type='RandomFlip', prob=1.)],
                                                [dict(type='TopdownAffine', input_size=(192, 256))],
                                                [dict(type='PackPoseInputs')]])]
    dataset = _dataset(sample, PLAIN_CONFIG, 'test', pipeline=tta)
    assert len(dataset[0]['data_samples']) == 2
    with Image.open(sample / IMAGE) as image:
        image.resize((320, 212)).save(sample / IMAGE, quality=95)
    with pytest.raises(ValueError, match='loads as 320x212'):
        dataset[_indices_on(dataset, IMAGE)[0]]

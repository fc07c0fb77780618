"""The synthetic set loads through real mmpose, and ``IPRCocoDataset`` fails early and clearly on bad input."""
import json
import re
from pathlib import Path
from typing import Dict

import pytest

from mmpose.datasets import CocoDataset
from mmpose.datasets.transforms import LoadImage
from mmpose.registry import DATASETS

import ipr_plugin.datasets.coco_dataset  # noqa: F401  (registers IPRCocoDataset)
from ipr_plugin.datasets.synthetic_coco import write_synthetic_coco

TRAIN_ANN = 'annotations/person_keypoints_train2017.json'
VAL_ANN = 'annotations/person_keypoints_val2017.json'


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory) -> Dict:
    return write_synthetic_coco(str(tmp_path_factory.mktemp('synthetic')), num_train=6, num_val=3,
                                image_size=(320, 240), seed=0)


def _train_cfg(root: str, **overrides) -> Dict:
    cfg = dict(data_root=root, ann_file=TRAIN_ANN, data_prefix=dict(img='train2017/'), data_mode='topdown',
               test_mode=False, pipeline=[])
    return {**cfg, **overrides}


def _val_cfg(out: Dict, **overrides) -> Dict:
    cfg = dict(data_root=out['root'], ann_file=VAL_ANN, data_prefix=dict(img='val2017/'), data_mode='topdown',
               test_mode=True, bbox_file=out['bbox_file'], pipeline=[])
    return {**cfg, **overrides}


def _num_annotations(path: str) -> int:
    with open(path) as f:
        return len(json.load(f)['annotations'])


@pytest.mark.parametrize('cls', [CocoDataset, 'IPRCocoDataset'])
def test_synthetic_set_loads_as_coco(synthetic, cls):
    train = DATASETS.build(dict(type=cls, **_train_cfg(synthetic['root'], pipeline=[LoadImage()])))
    assert len(train) == _num_annotations(synthetic['train_ann_file']) == synthetic['num_train_instances']
    sample = train[0]
    assert sample['img'].shape == (240, 320, 3) and sample['keypoints'].shape == (1, 17, 2)
    assert train.metainfo['num_keypoints'] == 17
    val = DATASETS.build(dict(type=cls, **_val_cfg(synthetic)))
    assert len(val) == synthetic['num_detections']
    with open(synthetic['val_ann_file']) as f:
        val_ids = {im['id'] for im in json.load(f)['images']}
    assert {val.get_data_info(i)['img_id'] for i in range(len(val))} <= val_ids


def _raises(exc, cfg: Dict, *needles: str) -> str:
    """Build ``IPRCocoDataset`` from ``cfg``; it must raise ``exc`` whose message holds every needle."""
    with pytest.raises(exc) as info:
        DATASETS.build(dict(type='IPRCocoDataset', **cfg))
    message = str(info.value)
    for needle in needles:
        assert needle in message, f'{needle!r} not in: {message}'
    return message


def test_missing_annotation_file(synthetic):
    missing = Path(synthetic['root']) / 'annotations' / 'nope.json'
    _raises(FileNotFoundError, _train_cfg(synthetic['root'], ann_file='annotations/nope.json'),
            str(missing), "ann_file='annotations/nope.json'", 'data_root')


def test_missing_bbox_file(synthetic):
    missing = str(Path(synthetic['root']) / 'no_detections.json')
    _raises(FileNotFoundError, _val_cfg(synthetic, bbox_file=missing), missing, 'bbox_file')


def test_missing_data_root_and_image_folder(synthetic, tmp_path):
    _raises(FileNotFoundError, _train_cfg(str(tmp_path / 'absent')), str(tmp_path / 'absent'), 'data_root')
    _raises(FileNotFoundError, _train_cfg(synthetic['root'], data_prefix=dict(img='images/')),
            str(Path(synthetic['root']) / 'images'), "data_prefix.img='images/'")


@pytest.fixture
def fifteen_keypoint_root(synthetic, tmp_path) -> str:
    """A copy of the synthetic annotations with 15 keypoints per instance (and category), images linked."""
    for split in ('train', 'val'):
        with open(synthetic[f'{split}_ann_file']) as f:
            coco = json.load(f)
        for ann in coco['annotations']:
            ann['keypoints'] = ann['keypoints'][:15 * 3]
        coco['categories'][0]['keypoints'] = coco['categories'][0]['keypoints'][:15]
        (tmp_path / 'annotations').mkdir(exist_ok=True)
        (tmp_path / 'annotations' / f'person_keypoints_{split}2017.json').write_text(json.dumps(coco))
        (tmp_path / f'{split}2017').symlink_to(synthetic[f'{split}_img_dir'])
    return str(tmp_path)


@pytest.mark.parametrize('mode', ['train', 'val with bbox_file'])
def test_wrong_keypoint_count(synthetic, fifteen_keypoint_root, mode):
    cfg = _train_cfg(fifteen_keypoint_root) if mode == 'train' else \
        _val_cfg(dict(synthetic, root=fifteen_keypoint_root))
    ann_file = str(Path(fifteen_keypoint_root) / cfg['ann_file'])
    message = _raises(ValueError, cfg, ann_file)
    assert re.search(r'\b15 keypoint', message) and re.search(r'expects 17\b', message), message


def test_samples_equal_mmposes_and_own_their_metainfo(coco_sample):
    """get_data_info gives what CocoDataset's gives, and mutating a sample leaves the dataset untouched."""
    import numpy as np

    from ipr_plugin.datasets.coco_dataset import IPRCocoDataset
    kwargs = dict(data_root=str(coco_sample), ann_file='test_coco.json', data_prefix=dict(img=''),
                  data_mode='topdown', pipeline=[])
    ours, ref = IPRCocoDataset(**kwargs), CocoDataset(**kwargs)
    assert len(ours) == len(ref) > 0
    for i in range(len(ref)):
        a, b = ref.get_data_info(i), ours.get_data_info(i)
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                np.testing.assert_array_equal(b[key], a[key], err_msg=key)
            else:
                assert b[key] == a[key], key
    sample = ours.get_data_info(0)
    sample['flip_indices'].reverse()
    sample['dataset_keypoint_weights'][:] = -1
    fresh = ours.get_data_info(0)
    assert fresh['flip_indices'] == ref.get_data_info(0)['flip_indices']
    assert (fresh['dataset_keypoint_weights'] > 0).all()

"""The synthetic set loads through real mmpose, and ``IPRCocoDataset`` fails early and clearly on bad input."""
import json
import logging
import re
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest

from mmpose.datasets import CocoDataset
from mmpose.datasets.transforms import LoadImage
from mmpose.registry import DATASETS

import ipr_plugin.datasets.body.coco_dataset  # noqa: F401  (registers IPRCocoDataset)
from ipr_plugin.datasets.synthetic_coco import write_synthetic_coco
from utils import writable_copy

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
    _raises(FileNotFoundError, _val_cfg(synthetic, bbox_file=missing), missing, 'bbox_file', 'of the val/test set')


def test_missing_data_root_and_image_folder(synthetic, tmp_path):
    _raises(FileNotFoundError, _train_cfg(str(tmp_path / 'absent')), str(tmp_path / 'absent'), 'data_root',
            'of the train set')  # which of the config's datasets
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


def test_the_metainfo_is_mmposes_installed_one_without_its_fallback_warning(coco_sample, tmp_path, monkeypatch):
    """CocoDataset names its metainfo file relative to an mmpose checkout and warns at every build elsewhere that
    it falls back on the installed one; ours names the installed one: the same metainfo, no warning."""
    import warnings

    from ipr_plugin.datasets.body.coco_dataset import IPRCocoDataset
    monkeypatch.chdir(tmp_path)  # no configs/_base_/datasets/coco.py here
    kwargs = dict(data_root=str(coco_sample), ann_file='test_coco.json', data_prefix=dict(img=''), pipeline=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ours = IPRCocoDataset(**kwargs)
    assert not [w for w in caught if 'metainfo config file' in str(w.message)]
    with pytest.warns(UserWarning, match='metainfo config file "configs/_base_/datasets/coco.py" does not exist'):
        theirs = CocoDataset(**kwargs)
    assert ours.metainfo.keys() == theirs.metainfo.keys()
    for key, value in theirs.metainfo.items():
        assert str(ours.metainfo[key]) == str(value), key


def test_samples_equal_mmposes_and_own_their_metainfo(coco_sample):
    """get_data_info gives what CocoDataset's gives, and mutating a sample leaves the dataset untouched."""
    import numpy as np

    from ipr_plugin.datasets.body.coco_dataset import IPRCocoDataset
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


# -- the COCO sample with a broken annotation or detection file --------------------------------------------------

DET_FILE = 'test_coco_det_AP_H_56.json'


@pytest.fixture
def sample(coco_sample, tmp_path) -> Path:
    """A writable copy of the COCO sample."""
    writable_copy(coco_sample, tmp_path / 'sample')
    return tmp_path / 'sample'


def _sample_cfg(root: Path, bbox_file: Optional[str] = None, **overrides) -> Dict:
    cfg = dict(data_root=str(root), ann_file='test_coco.json', data_prefix=dict(img=''), data_mode='topdown',
               test_mode=bbox_file is not None, pipeline=[])
    if bbox_file is not None:
        cfg['bbox_file'] = str(root / bbox_file)
    return {**cfg, **overrides}


def _edit_json(path: Path, edit: Callable) -> None:
    data = json.loads(path.read_text())
    data = edit(data) or data
    path.write_text(json.dumps(data))  # NaN and Infinity are written as JSON's readers (and COCO's) accept them


def _det_raises(sample: Path, *needles: str) -> str:
    return _raises(ValueError, _sample_cfg(sample, DET_FILE), str(sample / DET_FILE), *needles)


def test_detection_samples_equal_mmposes(coco_sample):
    """A valid detection file passes the checks with mmpose's samples unchanged."""
    import numpy as np
    cfg = _sample_cfg(coco_sample, DET_FILE)
    ours, ref = DATASETS.build(dict(type='IPRCocoDataset', **cfg)), CocoDataset(**cfg)
    assert len(ours) == len(ref) == 118 and ours.metainfo['CLASSES'] == ref.metainfo['CLASSES']
    for i in range(len(ref)):
        a, b = ref.get_data_info(i), ours.get_data_info(i)
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize('content', [b'', b'[{"bbox": [1, 2, 3, 4], "sco', b'\xff\xfe not text'],
                         ids=['empty', 'truncated', 'binary'])
def test_detection_file_not_json(sample, content):
    (sample / DET_FILE).write_bytes(content)
    _det_raises(sample, 'is not valid JSON: ')


@pytest.mark.parametrize('content', [{}, [], [dict(image_id=785, category_id=2, bbox=[1, 2, 3, 4], score=0.9)]],
                         ids=['object', 'empty list', 'no person'])
def test_detection_file_without_person_boxes(sample, content):
    (sample / DET_FILE).write_text(json.dumps(content))
    _det_raises(sample, 'has no person boxes')


def test_detection_on_an_image_not_in_the_annotation_file(sample):
    _edit_json(sample / DET_FILE, lambda dets: dets[7].update(image_id=999999))
    _det_raises(sample, 'entry 7 (image_id 999999)', str(sample / 'test_coco.json'))


@pytest.mark.parametrize('image_id', [785.0, '785'], ids=['float', 'string'])
def test_detection_with_an_image_id_that_is_no_int(sample, image_id):
    """mmpose looks images up by int: 785.0 would crash it with a TypeError, '785' with a KeyError."""
    _edit_json(sample / DET_FILE, lambda dets: dets[7].update(image_id=image_id))
    _det_raises(sample, f'entry 7 (image_id {image_id!r})', f'of type {type(image_id).__name__}, not int')
    with pytest.raises((TypeError, KeyError)):
        CocoDataset(**_sample_cfg(sample, DET_FILE))


@pytest.mark.parametrize('field, value, needle', [
    ('bbox', None, 'bbox None'), ('bbox', [1, 2, 3], 'bbox [1, 2, 3]'), ('bbox', [1, 2, '3', 4], "bbox [1, 2, '3', 4]"),
    ('bbox', [1, float('nan'), 3, 4], 'finite'), ('bbox', [1, 2, float('inf'), 4], 'finite'),
    ('score', None, 'score None'), ('score', float('nan'), 'finite'), ('score', True, 'score True'),
], ids=['no bbox', '3 values', 'a string', 'nan', 'inf', 'no score', 'nan score', 'bool score'])
def test_detection_entry_without_a_valid_box_or_score(sample, field, value, needle):
    def edit(dets):
        if value is None:
            del dets[5][field]
        else:
            dets[5][field] = value
    _edit_json(sample / DET_FILE, edit)
    _det_raises(sample, 'entry 5 (image_id 785)', needle)


def test_degenerate_detections_are_dropped_with_one_warning(sample, monkeypatch):
    import ipr_plugin.datasets.body.coco_dataset as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda *args, **kwargs: logged.append((args, kwargs)), raising=False)

    def edit(dets):
        dets[0]['bbox'][2] = 0
        dets[3]['bbox'][3] = -5.5
        dets[9]['bbox'][2:] = [0.0, 0.0]
    _edit_json(sample / DET_FILE, edit)
    dataset = DATASETS.build(dict(type='IPRCocoDataset', **_sample_cfg(sample, DET_FILE)))
    ids = [dataset.get_data_info(i)['id'] for i in range(len(dataset))]
    assert len(dataset) == 115 and ids == sorted(set(ids)) and 0 not in ids  # mmpose's ids, box 0's dropped
    for i in range(len(dataset)):
        bbox = dataset.get_data_info(i)['bbox'][0]
        assert (bbox[2:] > bbox[:2]).all()
    (message, ), kwargs = logged[0]
    assert len(logged) == 1 and kwargs == dict(logger='current', level=logging.WARNING)
    assert 'dropped 3 of 118 person boxes' in message and str(sample / DET_FILE) in message

    def flatten(dets):
        for det in dets:
            det['bbox'][3] = 0
    _edit_json(sample / DET_FILE, flatten)
    _det_raises(sample, 'no person boxes with a positive width and height (118 without)')


def test_a_detection_score_threshold_leaving_no_box(sample):
    _raises(ValueError, _sample_cfg(sample, DET_FILE, filter_cfg=dict(bbox_score_thr=1.5)),
            str(sample / DET_FILE), 'bbox_score_thr=1.5', 'nothing to test on')


@pytest.mark.parametrize('field, value, needle', [
    ('bbox', [280.79, float('nan'), 218.7, 346.68], 'bbox [280.79, nan'),
    ('bbox', [280.79, 44.73, float('inf'), 346.68], 'bbox [280.79, 44.73, inf'),
    ('keypoints', [float('inf')] + [1] * 50, 'keypoint 0 (x, y, visibility) = (inf, 1, 1)'),
    ('keypoints', [1] * 50 + [float('nan')], 'keypoint 16 (x, y, visibility) = (1, 1, nan)'),
    ('area', float('nan'), 'area nan'),
], ids=['nan bbox', 'inf bbox', 'inf keypoint', 'nan visibility', 'nan area'])
def test_non_finite_annotation(sample, field, value, needle):
    _edit_json(sample / 'test_coco.json', lambda coco: coco['annotations'][3].update({field: value}))
    with open(sample / 'test_coco.json') as f:
        ann = json.load(f)['annotations'][3]
    _raises(ValueError, _sample_cfg(sample), f'annotation id {ann["id"]} (image {ann["image_id"]})',
            str(sample / 'test_coco.json'), needle)


def test_every_annotation_keypoint_count_is_checked_with_a_bbox_file(sample):
    def edit(coco):
        coco['annotations'][-1]['keypoints'] = coco['annotations'][-1]['keypoints'][:15 * 3]
        return coco
    _edit_json(sample / 'test_coco.json', edit)
    last = json.loads((sample / 'test_coco.json').read_text())['annotations'][-1]
    message = _raises(ValueError, _sample_cfg(sample, DET_FILE), str(sample / 'test_coco.json'),
                      f'annotation id {last["id"]}')
    assert re.search(r'\b15 keypoint', message) and re.search(r'expects 17\b', message), message


def _no_keypoints(coco):
    for ann in coco['annotations']:
        ann['num_keypoints'] = 0


def _zero_area(coco):
    for ann in coco['annotations']:
        ann['bbox'][2] = 0


@pytest.mark.parametrize('edit, needle', [
    (lambda coco: coco.update(annotations=[]), '(0 annotations)'),
    (_no_keypoints, '(14 annotations: 14 with num_keypoints 0)'),
    (_zero_area, '(14 annotations: 2 with num_keypoints 0, 12 with a zero-area box)'),
], ids=['no annotations', 'no keypoints', 'zero-area boxes'])
def test_no_usable_training_instance(sample, edit, needle):
    _edit_json(sample / 'test_coco.json', edit)
    _raises(ValueError, _sample_cfg(sample), f'no usable instances in {sample / "test_coco.json"} {needle}',
            'nothing to train on')

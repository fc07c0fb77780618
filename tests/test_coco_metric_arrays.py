"""IPRCocoMetric's array-wide final evaluation gives mmpose's CocoMetric results bit for bit.

Each pure function is compared with mmpose's per-instance code on random data (float32 and float64, ties,
duplicate ids), then the whole metric with ``CocoMetric`` on predictions at a reduced COCO scale (every score
and NMS mode: same COCO stats and the same results file) and on a real model's predictions for the COCO sample's
detector boxes (with and without an annotation file).
"""
import copy
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from mmpose.datasets.datasets.utils import parse_pose_metainfo
from mmpose.evaluation.functional import oks_nms
from mmpose.evaluation.functional.nms import oks_iou
from mmpose.evaluation.metrics import CocoMetric
from mmpose.registry import MODELS
from mmpose.utils import register_all_modules

from ipr_plugin.benchmark.coco_scale import write_coco_scale_set
from ipr_plugin.evaluation import IPRCocoMetric
from utils import detector_box_dataset
from ipr_plugin.evaluation.functional import (first_of_each_id, greedy_nms, instance_scores,
                                              keypoint_extent_areas, oks_matrix)

COCO_META = dict(from_file='configs/_base_/datasets/coco.py')  # mmpose finds it in its installed configs


@pytest.fixture(scope='module')
def coco_meta():
    return parse_pose_metainfo(COCO_META)


def _poses(rng, n, dtype):
    """(n, 17, 3) poses (x, y, score), a few of them near-copies of others so that OKS spans its range."""
    poses = rng.uniform(0, 300, (n, 17, 3)).astype(dtype)
    poses[1::3] = poses[0::3][:len(poses[1::3])] + rng.normal(0, 2, poses[1::3].shape).astype(dtype)
    poses[..., 2] = rng.uniform(0, 1, (n, 17))
    return poses


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_oks_matrix_rows_are_mmposes_oks_iou_bit_for_bit(coco_meta, dtype):
    rng = np.random.default_rng(0)
    poses = _poses(rng, 40, dtype)
    areas = rng.uniform(50, 5e4, 40).astype(dtype)
    sigmas = coco_meta['sigmas']  # float32, as mmpose parses them
    matrix = oks_matrix(poses, areas, sigmas)
    flat = poses.reshape(40, -1)
    for i in range(40):
        expected = oks_iou(flat[i], flat, areas[i], areas, sigmas)
        assert expected.dtype == matrix.dtype
        np.testing.assert_array_equal(matrix[i], expected)
    assert 0.3 < matrix[0, 1] < 1 and matrix[0, 2] < 0.1  # near-copies overlap, random poses do not
    for block_elements in (1, 17 * 40 * 3, 17 * 40 * 7):  # rows one, three, seven at a time: the same values
        np.testing.assert_array_equal(oks_matrix(poses, areas, sigmas, block_elements=block_elements), matrix)


@pytest.mark.parametrize('seed', range(4))
def test_greedy_nms_keeps_what_oks_nms_keeps(coco_meta, seed):
    rng = np.random.default_rng(seed)
    n = 30
    poses = _poses(rng, n, np.float32)
    areas = keypoint_extent_areas(poses)
    scores = np.round(rng.uniform(0, 1, n), 1)  # ties: argsort's order among equal scores decides
    db = [dict(keypoints=poses[i], score=scores[i], area=areas[i]) for i in range(n)]
    overlaps = oks_matrix(poses, areas, coco_meta['sigmas'])
    best = int(scores.argsort()[::-1][0])
    tie = float(np.sort(overlaps[best][overlaps[best] < 1])[-1])  # an overlap with the best, exactly: kept by mmpose
    for thr in (0.3, 0.6, 0.9, tie):
        expected = oks_nms(db, thr, sigmas=coco_meta['sigmas'])
        kept = greedy_nms(scores, overlaps, thr)
        assert kept == [int(i) for i in expected]
        assert len(kept) < n or thr in (0.9, tie)
    # a threshold one float32 step below the tie drops that instance (numpy compares in the overlaps' float32)
    below = float(np.nextafter(np.float32(tie), np.float32(0)))
    assert greedy_nms(scores, overlaps, below) == [int(i) for i in oks_nms(db, below, sigmas=coco_meta['sigmas'])]
    assert len(greedy_nms(scores, overlaps, below)) == len(kept) - 1


def test_keypoint_extent_areas_are_mmposes_fallback_area():
    """What CocoMetric uses as a pose's area when the samples carry no box scales: the keypoints' extent."""
    poses = _poses(np.random.default_rng(5), 12, np.float32)
    expected = [(p[:, 0].max() - p[:, 0].min()) * (p[:, 1].max() - p[:, 1].min()) for p in poses]
    np.testing.assert_array_equal(keypoint_extent_areas(poses), np.array(expected, np.float32))


def test_first_of_each_id_is_mmposes_sort_and_unique():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 15, 40)
    instances = [dict(id=int(i), row=row) for row, i in enumerate(ids)]
    expected = CocoMetric._sort_and_unique_bboxes(None, {1: instances})[1]
    rows = first_of_each_id(ids, np.arange(40) + 100)
    assert rows.tolist() == [100 + inst['row'] for inst in expected]
    assert len(set(ids[rows - 100])) == len(rows)


def test_instance_scores_by_mode():
    kpt = np.array([[0.1, 0.5, 0.9], [0.1, 0.1, 0.1]], np.float32)
    box = np.array([0.8, 0.5], np.float32)
    np.testing.assert_allclose(instance_scores('bbox_keypoint', kpt, box, 0.2), [0.8 * 0.7, 0.0], rtol=1e-6)
    np.testing.assert_allclose(instance_scores('keypoint', kpt, box, 0.2), [0.5, 0.1], rtol=1e-6)
    np.testing.assert_allclose(instance_scores('bbox_rle', kpt, box, 0.2), [0.8 + 0.5 + 0.9, 0.5 + 0.1 + 0.1],
                               rtol=1e-6)
    np.testing.assert_array_equal(instance_scores('bbox', kpt, box, 0.2), box)
    with pytest.raises(ValueError, match="unknown score mode 'median'"):
        instance_scores('median', kpt, box, 0.2)


def test_a_keypoint_score_equal_to_the_threshold_is_counted_as_mmpose_counts_it():
    """float32(0.2) > 0.2 for mmpose's one-scalar-at-a-time comparison under numpy < 2 (in float64), though not
    in a float32 array comparison: the score of the second keypoint is counted by mmpose, so by us. Under numpy 2
    (NEP 50) the scalar comparison is in float32 too, and neither counts it."""
    kpt = np.array([[0.9, 0.2, 0.05], [0.2, 0.2, 0.2]], np.float32)
    box = np.array([1.0, 0.5], np.float32)
    expected = []
    for row, bbox in zip(kpt, box):  # CocoMetric's loop, as written in mmpose
        total, valid = 0, 0
        for score in row:
            if score > 0.2:
                total += score
                valid += 1
        expected.append(bbox * (total / valid if valid else total))
    np.testing.assert_array_equal(instance_scores('bbox_keypoint', kpt, box, 0.2), expected)
    assert (expected[1] > 0) == (np.lib.NumpyVersion(np.__version__) < '2.0.0')


def _evaluate(metric_cls, samples, meta, **kwargs):
    metric = metric_cls(**kwargs)
    metric.dataset_meta = meta
    metric.process([], copy.deepcopy(samples))
    return metric.evaluate(size=len(samples))


@pytest.fixture(scope='module')
def coco_scale(tmp_path_factory):
    out = tmp_path_factory.mktemp('coco_scale')
    ann_file, _, samples = write_coco_scale_set(str(out), num_images=150, seed=1)
    for sample in samples[5::40]:  # as gathered from several processes: the same instance twice
        samples.append(copy.deepcopy(sample))
    return ann_file, samples, out


@pytest.mark.parametrize('score_mode', ['bbox_keypoint', 'bbox', 'keypoint', 'bbox_rle'])
@pytest.mark.parametrize('nms_mode', ['oks_nms', 'none'])
def test_metric_matches_cocometric_bit_for_bit(coco_scale, coco_meta, score_mode, nms_mode):
    ann_file, samples, out = coco_scale
    results = {}
    for cls in (CocoMetric, IPRCocoMetric):
        prefix = str(out / f'{cls.__name__}_{score_mode}_{nms_mode}')
        metrics = _evaluate(cls, samples, coco_meta, ann_file=ann_file, score_mode=score_mode,
                            nms_mode=nms_mode, outfile_prefix=prefix)
        with open(f'{prefix}.keypoints.json') as f:
            results[cls] = metrics, json.load(f)
    assert results[IPRCocoMetric][0] == results[CocoMetric][0]
    assert results[IPRCocoMetric][1] == results[CocoMetric][1]  # every pose, score and order
    assert 0 < results[CocoMetric][0]['coco/AP'] < 1
    unique = len({s['id'] for s in samples})
    with open(ann_file) as f:
        people = len(json.load(f)['annotations'])
    # OKS NMS removes most of the near-copies (one per person); without it only duplicate ids go
    assert len(results[CocoMetric][1]) == (unique if nms_mode == 'none' else pytest.approx(unique - people, abs=30))


@pytest.mark.parametrize('nms_mode', ['oks_nms', 'none'])
def test_without_box_scales_the_areas_come_from_the_keypoints_as_mmposes(coco_scale, coco_meta, nms_mode):
    """A model that reports no ``bbox_scales``: OKS NMS and the results use each pose's keypoint extent, as
    CocoMetric's fallback computes it."""
    ann_file, samples, out = coco_scale
    samples = copy.deepcopy(samples)
    for sample in samples:
        del sample['gt_instances']['bbox_scales']
    results = {}
    for cls in (CocoMetric, IPRCocoMetric):
        prefix = str(out / f'{cls.__name__}_noscales_{nms_mode}')
        metrics = _evaluate(cls, samples, coco_meta, ann_file=ann_file, nms_mode=nms_mode, outfile_prefix=prefix)
        with open(f'{prefix}.keypoints.json') as f:
            results[cls] = metrics, json.load(f)
    assert results[IPRCocoMetric] == results[CocoMetric] and 0 < results[CocoMetric][0]['coco/AP'] < 1


def test_soft_nms_and_bottom_up_results_go_through_mmposes_code(coco_scale, coco_meta):
    ann_file, samples, _ = coco_scale
    assert (_evaluate(IPRCocoMetric, samples, coco_meta, ann_file=ann_file, nms_mode='soft_oks_nms')
            == _evaluate(CocoMetric, samples, coco_meta, ann_file=ann_file, nms_mode='soft_oks_nms'))
    # a bottom-up sample (several poses, one id) among top-down ones
    doubled = {part: {k: np.concatenate([v, v + 1]) for k, v in samples[0][part].items()}
               for part in ('pred_instances', 'gt_instances')}
    mixed = [dict(samples[0], **doubled)] + samples[1:]
    assert (_evaluate(IPRCocoMetric, mixed, coco_meta, ann_file=ann_file)
            == _evaluate(CocoMetric, mixed, coco_meta, ann_file=ann_file))


def test_crowdpose_evaluation_matches_cocometric_with_and_without_an_annotation_file(coco_scale, coco_meta, tmp_path):
    """iou_type='keypoints_crowd' also reports AP by crowd index, read again from the ground-truth file."""
    ann_file, samples, _ = coco_scale
    with open(ann_file) as f:
        data = json.load(f)
    for i, image in enumerate(data['images']):
        image['crowdIndex'] = (i % 10) / 10
    crowd_file = tmp_path / 'crowd.json'
    crowd_file.write_text(json.dumps(data))
    options = dict(iou_type='keypoints_crowd', use_area=False)
    expected = _evaluate(CocoMetric, samples, coco_meta, ann_file=str(crowd_file), **options)
    assert {'coco/AP(E)', 'coco/AP(M)', 'coco/AP(H)'} <= set(expected) and 0 < expected['coco/AP'] < 1
    assert _evaluate(IPRCocoMetric, samples, coco_meta, ann_file=str(crowd_file), **options) == expected
    # the names MetricKeyCheckHook checks save_best against are those reported, for either iou_type
    for kwargs, reported in ((dict(ann_file=str(crowd_file), **options), expected),
                             (dict(ann_file=ann_file), _evaluate(CocoMetric, samples, coco_meta, ann_file=ann_file))):
        assert [f'coco/{name}' for name in IPRCocoMetric(**kwargs).reported_names] == list(reported)
    # no annotation file: the ground truth converted from the samples (a temporary file) must outlive the summary
    by_image = {}
    for ann in data['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    crowd_index = {image['id']: image['crowdIndex'] for image in data['images']}
    converted = [dict(s, raw_ann_info=by_image.get(s['img_id'], []), crowd_index=crowd_index[s['img_id']],
                      ori_shape=(480, 640)) for s in samples]
    # another name than 'coco': mmpose's metrics take '<dataset_name>_ann_file' from the message hub, where an
    # earlier dataset of the session may have left its own
    meta = dict(coco_meta, CLASSES=data['categories'], dataset_name='crowd_from_samples')
    for nms_mode in ('oks_nms', 'soft_oks_nms'):  # the array path and mmpose's own
        assert (_evaluate(IPRCocoMetric, converted, meta, nms_mode=nms_mode, **options)
                == _evaluate(CocoMetric, converted, meta, nms_mode=nms_mode, **options))


def _sample_predictions(coco_sample, repo_root, detector_boxes=True):
    """A real (untrained, seeded) model's predictions for every detector (or ground-truth) box of the COCO
    sample."""
    register_all_modules()
    cfg = Config.fromfile(str(repo_root / 'configs/sample/ipr_res18_coco-sample-64x64.py'))
    dataset = detector_box_dataset(coco_sample, cfg.codec['input_size'], detector_boxes)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        samples = model.test_step(batch)
    return [s.to_dict() for s in samples], dataset.metainfo


def test_real_model_predictions_on_the_coco_sample(coco_sample, repo_root):
    samples, meta = _sample_predictions(coco_sample, repo_root)
    assert len(samples) == 118
    ann_file = str(coco_sample / 'test_coco.json')
    expected = _evaluate(CocoMetric, samples, meta, ann_file=ann_file)
    assert _evaluate(IPRCocoMetric, samples, meta, ann_file=ann_file) == expected
    # no annotation file: the ground truth comes from the samples, converted as mmpose converts it
    assert (_evaluate(IPRCocoMetric, samples, meta) == _evaluate(CocoMetric, samples, meta))


def test_predictions_on_ground_truth_boxes_match_cocometric(coco_sample, repo_root):
    """On ground-truth boxes mmpose's samples carry ``category_id`` as a 0-d array, which mmpose's JSON round
    trip turns into an int; results handed to ``loadRes`` in memory must hold the int too."""
    samples, meta = _sample_predictions(coco_sample, repo_root, detector_boxes=False)
    assert isinstance(samples[0]['category_id'], np.ndarray)  # what makes this case differ from detector boxes
    ann_file = str(coco_sample / 'test_coco.json')
    expected = _evaluate(CocoMetric, samples, meta, ann_file=ann_file)
    assert _evaluate(IPRCocoMetric, samples, meta, ann_file=ann_file) == expected
    assert _evaluate(IPRCocoMetric, samples, meta) == _evaluate(CocoMetric, samples, meta)


def test_bad_predictions_and_ground_truth_are_refused_naming_them(coco_scale, coco_meta, tmp_path):
    ann_file, samples, _ = coco_scale
    fewer = [dict(samples[0], pred_instances={k: v[:, :15] for k, v in samples[0]['pred_instances'].items()})]
    with pytest.raises(ValueError, match=r'image id 1 .* have 15 keypoints, the dataset 17: does model.head'):
        _evaluate(IPRCocoMetric, fewer, coco_meta, ann_file=ann_file)
    nan_box = [dict(samples[0], gt_instances=dict(samples[0]['gt_instances'], bbox_scores=np.array([np.nan])))]
    with pytest.raises(ValueError, match=r'the bbox_scores for image id 1 .* NaN or Inf'):
        _evaluate(IPRCocoMetric, nan_box, coco_meta, ann_file=ann_file)
    # ground truth without a labelled person: CocoMetric reports AP -1 as if it were a result
    with open(ann_file) as f:
        coco = json.load(f)
    for ann in coco['annotations']:
        ann['keypoints'][2::3] = [0] * 17
    unlabelled = tmp_path / 'unlabelled.json'
    unlabelled.write_text(json.dumps(coco))
    assert _evaluate(CocoMetric, samples[:50], coco_meta, ann_file=str(unlabelled))['coco/AP'] == -1
    with pytest.raises(ValueError, match=r'unlabelled.json\) has no person with labelled keypoints'):
        _evaluate(IPRCocoMetric, samples[:50], coco_meta, ann_file=str(unlabelled))
    # without ann_file, mmpose's metric loads the file the dataset registered: named too, not "converted"
    hub, key = MessageHub.get_current_instance(), f'{coco_meta["dataset_name"]}_ann_file'
    hub.update_info(key, str(unlabelled))
    try:
        with pytest.raises(ValueError, match=r'unlabelled.json\) has no person with labelled keypoints'):
            _evaluate(IPRCocoMetric, samples[:50], coco_meta)
    finally:
        hub.pop_info(key)
    # writing results without evaluating them (a test-dev submission) needs no labels
    prefix = str(tmp_path / 'submission')
    assert _evaluate(IPRCocoMetric, samples[:50], coco_meta, ann_file=str(unlabelled), format_only=True,
                     outfile_prefix=prefix) == {}
    assert len(json.loads(open(prefix + '.keypoints.json').read())) > 0


def test_an_annotation_file_without_the_evaluated_images_is_named(coco_scale, coco_meta, tmp_path):
    """An evaluator left on another annotation file than the dataset's: xtcocotools' loadRes asserts after the
    whole test run, without naming the file or the images."""
    ann_file, samples, _ = coco_scale
    with open(ann_file) as f:
        coco = json.load(f)
    evaluated = sorted({s['img_id'] for s in samples})
    dropped = set(evaluated[::2])
    coco['images'] = [img for img in coco['images'] if img['id'] not in dropped]
    coco['annotations'] = [ann for ann in coco['annotations'] if ann['image_id'] not in dropped]
    other = tmp_path / 'other_split.json'
    other.write_text(json.dumps(coco))
    with pytest.raises(AssertionError, match='Results do not correspond to current coco set'):
        _evaluate(CocoMetric, samples, coco_meta, ann_file=str(other))
    first = ', '.join(map(str, sorted(dropped)[:5]))
    assert len(dropped) > 5  # the message shows five
    with pytest.raises(ValueError, match=rf'other_split.json\) has no image with id {first}, \.\.\. \({len(dropped)} '
                       r'of the evaluated images\): give the evaluator the annotation file of the evaluated dataset'):
        _evaluate(IPRCocoMetric, samples, coco_meta, ann_file=str(other))

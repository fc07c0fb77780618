"""Sanity of our decode and scoring path: ground truth fed as predictions through it gives COCO AP 1.0."""
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmpose.registry import DATASETS, METRICS, MODELS
from mmpose.utils import register_all_modules

import ipr_plugin  # noqa: F401
from utils import detector_box_dataset

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'


def _with_an_instance_without_keypoints(coco_sample, tmp_path):
    """The sample's annotations and one more person whose keypoints are an empty list (num_keypoints 0), as
    files converted from other formats write people annotated without keypoints."""
    data = json.loads((coco_sample / 'test_coco.json').read_text())
    person = next(ann for ann in data['annotations'] if ann['num_keypoints'] > 0)
    data['annotations'].append(dict(person, id=10 ** 9, keypoints=[], num_keypoints=0))
    path = tmp_path / 'with_empty_keypoints.json'
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize('metric_type', ['CocoMetric', 'IPRCocoMetric'])
@pytest.mark.parametrize('ann_file', ['as is', 'with an instance without keypoints'])
def test_ground_truth_through_our_decode_path_scores_ap_one(coco_sample, repo_root, tmp_path, metric_type,
                                                            ann_file):
    register_all_modules()
    cfg = Config.fromfile(str(repo_root / CONFIG))
    codec = cfg.codec
    pipeline = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                dict(type='TopdownAffine', input_size=codec['input_size']),
                dict(type='GenerateTarget', encoder=codec), dict(type='PackPoseInputs')]
    ann_file = coco_sample / 'test_coco.json' if ann_file == 'as is' else \
        _with_an_instance_without_keypoints(coco_sample, tmp_path)
    # ground-truth boxes (no bbox_file): every person of the sample, with its labels
    dataset = DATASETS.build(dict(type='IPRCocoDataset', data_root=str(coco_sample), ann_file=str(ann_file),
                                  data_prefix=dict(img=''), data_mode='topdown', test_mode=True,
                                  pipeline=pipeline))
    model = MODELS.build(cfg.model)
    metric = METRICS.build(dict(type=metric_type, ann_file=str(ann_file)))
    metric.dataset_meta = dataset.metainfo

    batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
    samples = batch['data_samples']
    labels = torch.stack([s.gt_instance_labels.keypoint_labels for s in samples])  # (B, 1, K, 2)
    # the head's decode: normalised coordinates + scores -> input pixels (DSNTLabel.batch_decode)
    preds = model.head.decode((labels, torch.ones(labels.shape[:3])))
    samples = model.add_pred_to_datasample(preds, None, samples)
    metric.process([], [s.to_dict() for s in samples])
    results = metric.evaluate(size=len(samples))
    assert results['coco/AP'] == 1.0 and results['coco/AR'] == 1.0

    # and the keypoints themselves come back in image pixels, where the annotations put them
    for sample in samples:
        gt = sample.gt_instances.keypoints[0]
        vis = sample.gt_instances.keypoints_visible[0] > 0
        np.testing.assert_allclose(sample.pred_instances.keypoints[0][vis], gt[vis], atol=1e-3)


def _nan_pose_results(coco_sample, repo_root, metric_cfg):
    """Evaluate all-NaN poses with constant scores on the sample's detector boxes."""
    register_all_modules()
    cfg = Config.fromfile(str(repo_root / CONFIG))
    dataset = detector_box_dataset(coco_sample, cfg.codec['input_size'])
    model = MODELS.build(cfg.model)
    metric = METRICS.build(dict(metric_cfg, ann_file=str(coco_sample / 'test_coco.json')))
    metric.dataset_meta = dataset.metainfo
    samples = pseudo_collate([dataset[i] for i in range(len(dataset))])['data_samples']
    n = len(samples)
    preds = model.head.decode((torch.full((n, 1, 17, 2), float('nan')), torch.ones(n, 1, 17)))
    samples = model.add_pred_to_datasample(preds, None, samples)
    metric.process([], [s.to_dict() for s in samples])
    return metric.evaluate(size=n)


def test_nan_poses_score_an_ap_with_cocometric_and_an_error_with_ours(coco_sample, repo_root):
    # the artefact IPRCocoMetric exists for: NaN OKS passes every threshold test, NaN poses "match" people
    assert _nan_pose_results(coco_sample, repo_root, dict(type='CocoMetric'))['coco/AP'] > 0.1
    with pytest.raises(ValueError, match='image id 785 .*000000000785.jpg.* NaN or Inf'):
        _nan_pose_results(coco_sample, repo_root, dict(type='IPRCocoMetric'))
    allowed = _nan_pose_results(coco_sample, repo_root, dict(type='IPRCocoMetric', allow_nonfinite=True))
    assert allowed['coco/AP'] > 0.1

"""Sanity of our decode and scoring path: ground truth fed as predictions through it gives COCO AP 1.0."""
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmpose.registry import DATASETS, METRICS, MODELS
from mmpose.utils import register_all_modules

import ipr_plugin  # noqa: F401

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'


def test_ground_truth_through_our_decode_path_scores_ap_one(coco_sample, repo_root):
    register_all_modules()
    cfg = Config.fromfile(str(repo_root / CONFIG))
    codec = cfg.codec
    pipeline = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                dict(type='TopdownAffine', input_size=codec['input_size']),
                dict(type='GenerateTarget', encoder=codec), dict(type='PackPoseInputs')]
    # ground-truth boxes (no bbox_file): every person of the sample, with its labels
    dataset = DATASETS.build(dict(type='IPRCocoDataset', data_root=str(coco_sample), ann_file='test_coco.json',
                                  data_prefix=dict(img=''), data_mode='topdown', test_mode=True,
                                  pipeline=pipeline))
    model = MODELS.build(cfg.model)
    metric = METRICS.build(dict(type='CocoMetric', ann_file=str(coco_sample / 'test_coco.json')))
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

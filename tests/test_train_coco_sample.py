"""Our head, codec and each loss train through mmengine's Runner on the real COCO sample, and predict sensibly."""
import math

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'
LOSSES = {
    'l1': dict(type='IntegralL1Loss'),
    'joint_js': dict(type='IntegralJointLoss', anneal=dict(mode='cosine', by='iter')),
    'joint_kl_debias': dict(type='IntegralJointLoss', regularizer='kl'),
    'joint_var': dict(type='IntegralJointLoss', regularizer='var', coord_loss='euclidean'),
}


@pytest.mark.parametrize('name', list(LOSSES))
def test_trains_without_nan_and_predicts(name, coco_sample, repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    cfg = Config.fromfile(CONFIG)
    assert cfg.custom_imports['imports'] == ['ipr_plugin']
    cfg.model.head.loss = LOSSES[name]
    if name.endswith('debias'):
        cfg.model.head.update(beta=10.0, debias=True)
    cfg.data_root = str(coco_sample)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root = str(coco_sample)
    cfg.val_dataloader.dataset.bbox_file = str(coco_sample / 'test_coco_det_AP_H_56.json')
    cfg.train_cfg = dict(by_epoch=False, max_iters=4, val_interval=100)
    cfg.param_scheduler = []
    cfg.work_dir = str(tmp_path)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.val_cfg = cfg.test_cfg = cfg.val_dataloader = cfg.test_dataloader = None
    cfg.val_evaluator = cfg.test_evaluator = None
    runner = Runner.from_cfg(cfg)
    losses = []
    runner.register_hook(_Collect(losses), priority='LOWEST')
    runner.train()

    assert len(losses) == 4
    assert all(math.isfinite(v) for step in losses for v in step.values())
    assert {k for k in losses[0] if k.startswith('loss_')} == (
        {'loss_kpt'} if name == 'l1' else {'loss_coord', 'loss_hm'})

    model = runner.model.eval()
    batch = next(iter(_val_loader(cfg, coco_sample)))
    with torch.no_grad():
        preds = model.test_step(batch)
    for sample in preds:
        inst = sample.pred_instances
        kpts, scores = inst.keypoints, inst.keypoint_scores
        assert np.isfinite(kpts).all()
        # soft-argmax keeps every keypoint inside the crop the model saw (which may extend past the image)
        lo = sample.input_center - sample.input_scale / 2
        hi = sample.input_center + sample.input_scale / 2
        assert ((kpts >= lo - 1e-3) & (kpts <= hi + 1e-3)).all()
        assert ((scores >= 0) & (scores <= 1)).all()
        assert np.ptp(scores) > 0


def _val_loader(cfg, coco_sample):
    val = Config.fromfile(CONFIG).val_dataloader
    val.dataset.data_root = str(coco_sample)
    val.dataset.bbox_file = str(coco_sample / 'test_coco_det_AP_H_56.json')
    return Runner.build_dataloader(val)


class _Collect(Hook):
    """Records each training iteration's log variables."""

    def __init__(self, store):
        self.store = store

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.store.append({k: float(v.detach()) for k, v in outputs.items()})

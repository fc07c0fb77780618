"""The CrowdPose config (14 keypoints) trains, validates and tests through mmengine's Runner on a synthetic set in
CrowdPose's layout: the plugin is not tied to COCO's 17 joints."""
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.datasets.synthetic_coco import write_synthetic_coco
from ipr_plugin.paths import REPO_ROOT

CONFIG = REPO_ROOT / 'configs' / 'ipr_res50_8xb64-210e_crowdpose-256x256.py'
# CrowdPose's joints from COCO's: shoulders to ankles keep their order (left, right, ...), then head top and neck
_FROM_COCO = list(range(5, 17))


def _crowdpose_keypoints(coco: list) -> list:
    k = np.asarray(coco, float).reshape(17, 3)
    top = k[0].copy()  # the nose stands in for the head top
    neck = np.append((k[5, :2] + k[6, :2]) / 2, min(k[5, 2], k[6, 2])) if k[5, 2] and k[6, 2] else np.zeros(3)
    return np.concatenate([k[_FROM_COCO], top[None], neck[None]]).round().astype(int).ravel().tolist()


@pytest.fixture(scope='module')
def crowdpose_root(tmp_path_factory) -> Path:
    """A synthetic COCO set rewritten as mmpose's converted CrowdPose files: 14 keypoints per person, a crowd
    index per image, one image folder."""
    root = tmp_path_factory.mktemp('crowdpose')
    written = write_synthetic_coco(str(root / 'coco'), num_train=8, num_val=3, image_size=(320, 240), seed=0)
    (root / 'annotations').mkdir()
    (root / 'images').mkdir()
    for split, name in (('train', 'mmpose_crowdpose_trainval.json'), ('val', 'mmpose_crowdpose_test.json')):
        data = json.loads(Path(written[f'{split}_ann_file']).read_text())
        for i, image in enumerate(data['images']):
            image['crowdIndex'] = round(0.3 * i % 1, 2)
            shutil.copy(Path(written[f'{split}_img_dir']) / image['file_name'], root / 'images')
        for ann in data['annotations']:
            ann['keypoints'] = _crowdpose_keypoints(ann['keypoints'])
            ann['num_keypoints'] = sum(v > 0 for v in ann['keypoints'][2::3])
        data['categories'][0].update(keypoints=[f'joint_{j}' for j in range(14)], skeleton=[])
        (root / 'annotations' / name).write_text(json.dumps(data))
    shutil.copy(written['bbox_file'], root / 'annotations' / 'det_for_crowd_test_0.1_0.5.json')
    return root


def _cfg(root: Path, work_dir: Path) -> Config:
    """The config at 64x64 input with a ResNet-18 and no pretrained weights, on ``root``, for 4 iterations."""
    cfg = Config.fromfile(str(CONFIG))
    codec = dict(type='DSNTLabel', input_size=(64, 64))
    cfg.model.backbone = dict(type='ResNet', depth=18)
    cfg.model.head.update(in_channels=512, in_featuremap_size=(2, 2), deconv_out_channels=(32, 32, 32),
                          decoder=codec)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = f'{root}/'
        for step in loader.dataset.pipeline:
            if 'input_size' in step:
                step.input_size = codec['input_size']
            if 'encoder' in step:
                step.encoder = codec
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.bbox_file = f'{root}/annotations/det_for_crowd_test_0.1_0.5.json'
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = f'{root}/annotations/mmpose_crowdpose_test.json'
    cfg.train_cfg = dict(by_epoch=False, max_iters=4, val_interval=4)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.update(by_epoch=False, interval=4)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    return cfg


def test_the_crowdpose_config_trains_validates_and_tests_with_14_joints(crowdpose_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mmpose's metainfo file is not found from here: taken from the installed mmpose
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        runner = Runner.from_cfg(_cfg(crowdpose_root, tmp_path / 'work'))
        runner.train()
    assert not [w for w in caught if 'metainfo config file' in str(w.message)]
    assert runner.train_dataloader.dataset.metainfo['dataset_name'] == 'crowdpose'
    assert runner.train_dataloader.dataset.metainfo['num_keypoints'] == 14
    # validation reported CrowdPose's keys, including AP by crowd index, and the best checkpoint was kept by them
    assert (tmp_path / 'work' / 'best_crowdpose_AP_iter_4.pth').is_file()
    metrics = runner.test()
    assert {'crowdpose/AP', 'crowdpose/AP(E)', 'crowdpose/AP(M)', 'crowdpose/AP(H)'} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    # one prediction of 14 keypoints per detector box, flipped with CrowdPose's pairs
    batch = next(iter(runner.test_dataloader))
    predictions = runner.model.test_step(batch)
    assert len(predictions) == len(batch['data_samples'])
    assert all(p.pred_instances.keypoints.shape == (1, 14, 2) for p in predictions)
    assert runner.test_dataloader.dataset.metainfo['flip_indices'] == [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]


def test_a_17_joint_head_on_crowdpose_is_refused_at_the_first_batch(crowdpose_root, tmp_path):
    cfg = _cfg(crowdpose_root, tmp_path)
    cfg.model.head.num_joints = 17
    with pytest.raises(ValueError, match=r'has shape \(4, 14, 2\), the head predicts \(4, 17, 2\) \(num_joints=17\)'):
        Runner.from_cfg(cfg).train()

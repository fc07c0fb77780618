"""Every shipped config parses, imports only the plugin, and builds its model and pipelines with real mmpose."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmpose.registry import MODELS, TRANSFORMS
from mmpose.utils import register_all_modules

import ipr_plugin  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
OURS = sorted(p for p in (REPO / 'configs').rglob('*.py') if not p.name.startswith('mmpose-'))


@pytest.mark.parametrize('path', OURS, ids=lambda p: str(p.relative_to(REPO / 'configs')))
def test_config_builds(path, monkeypatch):
    monkeypatch.chdir(REPO)
    register_all_modules()
    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports == dict(imports=['ipr_plugin'], allow_failed_imports=False)
    assert cfg.model.head.type == 'IPRHead' and cfg.codec.type == 'DSNTLabel'
    cfg.model.init_cfg = None  # no network here: the released weights are not fetched
    model = MODELS.build(cfg.model)
    w, h = cfg.codec.input_size
    with torch.no_grad():
        coords, probs = model.head(model.backbone(torch.zeros(1, 3, h, w)))
    joints = 14 if 'crowdpose' in path.name else 17
    assert coords.shape == (1, joints, 2) and probs.shape[-2:] == (h // 4, w // 4)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        for step in loader.dataset.pipeline:
            TRANSFORMS.build(step)


def test_the_three_rows_differ_only_where_they_should(monkeypatch):
    monkeypatch.chdir(REPO)
    ipr, dsnt, debias = (Config.fromfile(f'configs/ipr_res50_{n}8xb64-210e_coco-256x256.py')
                         for n in ('', 'dsnt-', 'debias-'))
    assert ipr.model.head.loss == dict(type='IntegralL1Loss')
    assert dsnt.model.head.loss.type == 'IntegralJointLoss' and dsnt.model.head.loss.regularizer == 'js'
    assert debias.model.head.loss == dsnt.model.head.loss
    assert (debias.model.head.beta, debias.model.head.debias) == (10.0, True)
    assert ipr.model.init_cfg.checkpoint.startswith('https://download.openmmlab.com/mmpose/')
    for cfg in (ipr, dsnt, debias):
        assert cfg.train_cfg.max_epochs == 210 and cfg.optim_wrapper.optimizer == dict(type='Adam', lr=5e-4)
        assert cfg.val_dataloader.dataset.bbox_file.endswith('COCO_val2017_detections_AP_H_56_person.json')
        assert cfg.model.test_cfg.flip_test


@pytest.mark.parametrize('name', ['ipr_res50_8xb64-210e_coco-256x256.py', 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py'])
def test_mim_tests_badcase_hook_gets_a_metric_it_can_call(name, monkeypatch):
    """mmpose's ``test.py --badcase`` takes the head's loss as the bad-case metric unless the config names one, and
    calls ``metric(pred, gt, visible).item()`` on image-pixel keypoints: our losses return a dict (or need the
    maps). The configs name mmpose's L1Loss: the mean pixel error over the visible keypoints."""
    import numpy as np
    from mmengine.structures import InstanceData
    from mmpose.registry import HOOKS
    from mmpose.structures import PoseDataSample
    monkeypatch.chdir(REPO)
    register_all_modules()
    from mmpose.visualization import PoseLocalVisualizer
    PoseLocalVisualizer.get_instance('badcase_test')  # the hook draws with the current visualizer
    hook = HOOKS.build(Config.fromfile(f'configs/{name}').default_hooks.badcase)
    assert hook.kpt_thr == 0.0
    sample = PoseDataSample()
    gt = np.random.default_rng(0).uniform(0, 200, (1, 17, 2)).astype(np.float32)
    visible = np.ones((1, 17), np.float32)
    visible[0, :5] = 0
    pred = gt + 4.0
    pred[0, :5] += 1000  # invisible keypoints do not count
    sample.gt_instances = InstanceData(keypoints=gt, keypoints_visible=visible)
    sample.pred_instances = InstanceData(keypoints=pred)
    is_bad, value = hook.check_badcase(None, sample)
    assert value == pytest.approx(4.0 * 12 / 17) and not is_bad  # mmpose's L1Loss averages over all K x 2 entries


def test_a_child_of_the_fast_configs_restating_custom_hooks_keeps_their_hooks(tmp_path):
    from mmengine.runner import Runner

    def hooks(cfg: Config) -> set:
        cfg.work_dir, cfg.load_from = str(tmp_path), None
        return {type(hook).__name__ for hook in Runner.from_cfg(cfg).hooks}

    # as mmpose's configs add EMA: custom_hooks is a list, which a child replaces
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['{REPO}/configs/ipr_res50_fast-compile-8xb64-210e_coco-256x256.py']\n"
                     "custom_hooks = [dict(type='EMAHook')]\n")
    cfg = Config.fromfile(str(child))
    assert {'ChannelsLastHook', 'IPRTestCollateHook', 'CompileHook', 'IPRRuntimeInfoHook', 'EMAHook'} <= hooks(cfg)
    cfg.merge_from_dict({'default_hooks.channels_last': None, 'default_hooks.compile': None})
    kept = hooks(cfg)
    assert not {'ChannelsLastHook', 'CompileHook'} & kept and 'IPRTestCollateHook' in kept

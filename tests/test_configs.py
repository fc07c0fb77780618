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
    assert coords.shape == (1, 17, 2) and probs.shape[-2:] == (h // 4, w // 4)
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

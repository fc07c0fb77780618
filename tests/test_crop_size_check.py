"""CropSizeCheckHook: a val pipeline cropping at another size than IPRHead decodes for stops the run before
training, not a whole val_interval later at the first validation; a test pipeline's gets a warning."""
import copy

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.engine.crop_size_check_hook import config_crop_sizes
from ipr_plugin.paths import REPO_ROOT
from utils import runner_log, sample_runner_cfg


def test_crop_sizes_are_read_from_the_config_wrapped_datasets_included():
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'ipr_res50_fast-8xb64-210e_coco-256x256.py'))
    assert config_crop_sizes(cfg.val_dataloader) == [(256, 256)]  # IPRTopdownAffine, the fast config's
    from mmpose.datasets.transforms import TopdownAffine
    combined = dict(dataset=dict(type='CombinedDataset', pipeline=[], datasets=[
        dict(type='CocoDataset', pipeline=[dict(type='TopdownAffine', input_size=(192, 256))]),
        dict(type='AicDataset', pipeline=[dict(type=TopdownAffine, input_size=[288, 384])])]))
    assert config_crop_sizes(combined) == [(192, 256), (288, 384)]
    assert config_crop_sizes(None) == [] and config_crop_sizes(dict(dataset=dict(pipeline=[]))) == []


def _cfg(coco_sample, work_dir, val_size=None, test_size=None, check=True) -> Config:
    """Two iterations of the sample config (64x64 crops), validated after the second, with the val or test
    pipeline's TopdownAffine cropping at another size."""
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, max_iters=2, val_interval=2),
                            logger_interval=1, val_samples=4)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2)
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    for loader, size in ((cfg.val_dataloader, val_size), (cfg.test_dataloader, test_size)):
        affine = next(t for t in loader.dataset.pipeline if t['type'].endswith('TopdownAffine'))
        affine['input_size'] = size or affine['input_size']
    if not check:
        del cfg.default_hooks['crop_size_check']
    return cfg


def test_a_val_pipeline_of_another_crop_size_is_refused_before_training(coco_sample, tmp_path):
    message = (r"^val_dataloader: IPRHead: the pipeline's crops are \(48, 64\) \(w, h; TopdownAffine's input_size\) "
               r'but the head decodes for \(64, 64\)')
    # without the hook the head refuses the crops only at the first validation, after the training before it
    with pytest.raises(ValueError, match="IPRHead: the pipeline's crops are"):
        Runner.from_cfg(_cfg(coco_sample, tmp_path / 'unchecked', val_size=(48, 64), check=False)).train()
    assert (tmp_path / 'unchecked' / 'iter_2.pth').is_file()

    runner = Runner.from_cfg(_cfg(coco_sample, tmp_path / 'checked', val_size=(48, 64)))
    with pytest.raises(ValueError, match=message):
        runner.train()
    log = runner_log(runner)
    assert 'Iter(train)' not in log and 'ValueError: val_dataloader: IPRHead' in log
    assert not list((tmp_path / 'checked').rglob('*.pth'))


def test_a_test_pipeline_of_another_crop_size_is_warned_of_and_matching_ones_pass(coco_sample, tmp_path):
    runner = Runner.from_cfg(_cfg(coco_sample, tmp_path / 'test', test_size=(64, 48)))
    runner.train()
    log = runner_log(runner)
    assert ("test_dataloader: IPRHead: the pipeline's crops are (64, 48) (w, h; TopdownAffine's input_size) but "
            'the head decodes for (64, 64)') in log and '`mim test` would refuse it' in log
    runner = Runner.from_cfg(_cfg(coco_sample, tmp_path / 'same'))
    runner.train()
    assert 'crops are' not in runner_log(runner)

"""CompileHook: the backbone and deconv stack run compiled through the Runner, with unchanged numbers and names.

The real compiler (inductor) takes minutes on two cores, so the Runner tests compile with dynamo's
``aot_eager`` backend: the same graph capture and autograd tracing, executed by eager kernels.
"""
import math

import pytest
import torch
from mmengine.config import Config
from torch._dynamo.utils import counters
from mmengine.hooks import Hook
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
from ipr_plugin.engine import CompileHook
from ipr_plugin.engine.compile_hook import compile_modules

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'


@pytest.fixture(autouse=True)
def own_inductor_cache(tmp_path, monkeypatch):
    """inductor's compiled kernels in the test's folder: its default cache (150 MB, in the shared temporary folder)
    outlived the run, and a warm one changes what the next run compiles."""
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path / 'inductor'))


def _cfg(coco_sample, work_dir, hooks=()):
    cfg = Config.fromfile(CONFIG)
    root = f'{coco_sample}/'
    cfg.train_dataloader.dataset.data_root = cfg.val_dataloader.dataset.data_root = root
    cfg.val_dataloader.dataset.update(bbox_file=f'{root}test_coco_det_AP_H_56.json', indices=8)
    cfg.val_evaluator.ann_file = f'{root}test_coco.json'
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.val_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.train_cfg = dict(by_epoch=False, max_iters=3, val_interval=3)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=3, save_best=None)
    cfg.custom_hooks = list(hooks)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    return cfg


class _Losses(Hook):
    def __init__(self):
        self.values = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.values.append({k: float(v.detach()) for k, v in outputs.items()})


def _train(cfg):
    runner = Runner.from_cfg(cfg)
    losses = _Losses()
    runner.register_hook(losses, priority='LOWEST')
    runner.train()
    return runner, losses.values


def test_compiled_training_matches_eager_and_keeps_checkpoint_names(coco_sample, repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    torch._dynamo.reset()
    counters.clear()
    eager_runner, eager = _train(_cfg(coco_sample, tmp_path / 'eager'))
    assert not counters['stats']['unique_graphs']
    # an EMAHook (mmpose's RTMPose configs) copies the model in before_run: before compilation replaces forwards
    compiled_runner, compiled = _train(_cfg(coco_sample, tmp_path / 'compiled',
                                            [dict(type='CompileHook', backend='aot_eager'), dict(type='EMAHook')]))
    model = compiled_runner.model
    assert model.backbone._ipr_compiled and model.head.simplebaseline_head._ipr_compiled
    ema = next(hook for hook in compiled_runner.hooks if type(hook).__name__ == 'EMAHook').ema_model.module
    assert 'forward' not in vars(ema.backbone) and 'forward' not in vars(ema.head.simplebaseline_head)
    assert counters['stats']['unique_graphs'] >= 2  # dynamo captured the backbone and the deconv stack
    assert len(compiled) == len(eager) == 3
    for ours, ref in zip(compiled, eager):
        assert set(ours) == set(ref)
        for key in ref:
            assert math.isclose(ours[key], ref[key], rel_tol=1e-4, abs_tol=1e-6), (key, ours[key], ref[key])
    # validation ran compiled too, and the checkpoint has the eager model's parameter names
    ckpt = torch.load(tmp_path / 'compiled' / 'iter_3.pth', map_location='cpu', weights_only=True)
    assert set(ckpt['state_dict']) == set(eager_runner.model.state_dict())
    assert not any('_orig_mod' in k for k in ckpt['state_dict'])


def test_unknown_module_names_the_culprit(coco_sample, repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    runner = Runner.from_cfg(_cfg(coco_sample, tmp_path, [dict(type='CompileHook', modules=['backbone', 'nek'])]))
    with pytest.raises(ValueError, match=r"\['nek'\] are not submodules of TopdownPoseEstimator"):
        runner.train()
    assert CompileHook().modules == ('backbone', )


def test_default_backend_gives_the_eager_numbers(repo_root, monkeypatch):
    """inductor itself (CompileHook's default), on a narrow model: forward and backward match eager."""
    import copy

    from mmpose.registry import MODELS
    from mmpose.utils import register_all_modules
    monkeypatch.chdir(repo_root)
    register_all_modules()
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.update(stem_channels=8, base_channels=8)
    cfg.model.head.update(in_channels=64, deconv_out_channels=(16, 16, 16))
    torch.manual_seed(0)
    eager = MODELS.build(cfg.model)
    eager.init_weights()
    compiled = copy.deepcopy(eager)

    hook = CompileHook()
    assert compile_modules(compiled, hook.modules, hook.optional) == ['backbone', 'head.simplebaseline_head']
    x = torch.randn(4, 3, 64, 64)
    counters.clear()
    outs = [m.head(m.backbone(x))[0] for m in (eager, compiled)]
    assert counters['stats']['unique_graphs'] >= 2  # compiled, not the eager copy: the backbone and the deconv stack
    assert counters['inductor']  # and by inductor
    for out in outs:
        out.square().sum().backward()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled.backbone.conv1.weight.grad, eager.backbone.conv1.weight.grad,
                               rtol=1e-3, atol=1e-5)
    assert compiled.state_dict().keys() == eager.state_dict().keys()

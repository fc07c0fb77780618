"""IPRTestCollateHook: a test run (``mim test``) collates with ipr_collate, which the config cannot name for its
test loader (mmengine's inferencer reads that name), and predicts what it predicts without the hook."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import LOOPS
from mmengine.runner import Runner
from mmengine.runner import TestLoop as EngineTestLoop  # not collected as a test class
from mmpose.registry import HOOKS

import ipr_plugin  # noqa: F401
from ipr_plugin.datasets.collate import ipr_collate
from ipr_plugin.engine import IPRTestCollateHook
from test_jpeg_region_pipeline import _warnings_of
from utils import sample_runner_cfg


class _Record(Hook):
    """What each test batch's ``inputs`` is (one stacked tensor from ipr_collate, a list from pseudo_collate), and
    every predicted keypoint and score, in sample order."""

    def __init__(self) -> None:
        self.kinds, self.keypoints = [], []

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.kinds.append(type(data_batch['inputs']).__name__)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for sample in outputs:
            pred = sample.pred_instances
            self.keypoints.append(np.concatenate([pred.keypoints, pred.keypoint_scores[..., None]], axis=-1))


def _runner(coco_sample, work_dir, hooks: list, preprocessor: str = 'IPRDataPreprocessor', test_cfg=None,
            **test_loader) -> Runner:
    cfg = sample_runner_cfg(coco_sample, work_dir, dict(by_epoch=False, max_iters=1), logger_interval=1)
    cfg.model.data_preprocessor = dict(cfg.model.data_preprocessor, type=preprocessor)
    if test_cfg is not None:
        cfg.test_cfg = test_cfg
    # a loader worker: the collate function set before the first batch must reach the worker's loop
    cfg.test_dataloader = dict(cfg.val_dataloader, num_workers=1, persistent_workers=False, batch_size=8,
                               **test_loader)
    cfg.default_hooks.pop('checkpoint')  # its save_best needs a train loop
    cfg.custom_hooks = hooks
    return Runner.from_cfg(cfg)


def _test(runner: Runner):
    record = _Record()
    runner.register_hook(record)
    metrics = runner.test()
    return metrics, record


@pytest.fixture(scope='module')
def peaked_weights(coco_sample, tmp_path_factory) -> dict:
    """The sample model with a head whose maps peak (random init gives flat maps, every AP 0): weights under which a
    change in the inputs shows in the keypoints and the metrics."""
    runner = _runner(coco_sample, tmp_path_factory.mktemp('init'), [])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in runner.model.head.parameters():
            p.normal_(0, 1.0)
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_a_test_run_collates_with_ipr_collate_and_predicts_the_same(coco_sample, tmp_path, peaked_weights):
    runs = {}
    for name, hooks in (('hook', [dict(type='IPRTestCollateHook')]), ('plain', [])):
        runner = _runner(coco_sample, tmp_path / name, hooks)
        assert 'collate_fn' not in runner.cfg.test_dataloader
        runner.model.load_state_dict(peaked_weights)
        runs[name] = _test(runner)
        loader = runner.test_loop.dataloader
        assert loader.collate_fn.func is pseudo_collate  # the loader's own, back after the test
    (metrics, record), (plain_metrics, plain) = runs['hook'], runs['plain']
    assert len(record.kinds) == len(plain.kinds) > 1
    assert set(record.kinds) == {'Tensor'} and set(plain.kinds) == {'list'}
    assert len(record.keypoints) == len(plain.keypoints) > 8
    for ours, ref in zip(record.keypoints, plain.keypoints):
        np.testing.assert_array_equal(ours, ref)
    assert len({round(float(k[0, 0, 0]), 3) for k in plain.keypoints}) > 1  # not one flat answer for every box
    assert 'coco/AP' in metrics and metrics == plain_metrics


def test_a_collate_function_the_config_names_is_kept(coco_sample, tmp_path):
    runner = _runner(coco_sample, tmp_path, [dict(type='IPRTestCollateHook')],
                     collate_fn=dict(type='pseudo_collate'))
    _, record = _test(runner)
    assert set(record.kinds) == {'list'}


class _Batches(list):
    dataset = None


@LOOPS.register_module(force=True)
class _ListTestLoop(EngineTestLoop):
    """A test loop over a list of batches (no DataLoader, whose collate function the hook could set)."""

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        batches = _Batches(self.dataloader)
        batches.dataset = self.dataloader.dataset
        self.dataloader = batches


@pytest.mark.parametrize('case', ['preprocessor', 'loop'])
def test_where_the_hook_cannot_help_it_says_so_and_the_test_runs(coco_sample, tmp_path, case):
    """mmpose's PoseDataPreprocessor is left its pseudo_collate lists; a test loop without a DataLoader too."""
    hooks = [dict(type='IPRTestCollateHook')]
    runner = (_runner(coco_sample, tmp_path, hooks, preprocessor='PoseDataPreprocessor') if case == 'preprocessor'
              else _runner(coco_sample, tmp_path, hooks, test_cfg=dict(type='_ListTestLoop')))
    done = {}
    messages = _warnings_of(lambda: done.update(zip(('metrics', 'record'), _test(runner))))
    what = ('the data preprocessor is PoseDataPreprocessor, not IPRDataPreprocessor' if case == 'preprocessor' else
            'the test loader is a _Batches, not a torch DataLoader')
    assert f'IPRTestCollateHook: {what}; the test batches are collated as the loader does' in messages
    assert 'coco/AP' in done['metrics'] and set(done['record'].kinds) == {'list'}


def test_the_fast_configs_collate_at_test_time_as_they_validate(repo_root):
    for name in ('fast', 'fast-compile'):
        cfg = Config.fromfile(str(repo_root / f'configs/ipr_res50_{name}-8xb64-210e_coco-256x256.py'))
        assert cfg.val_dataloader.collate_fn == dict(type='ipr_collate')
        assert 'collate_fn' not in cfg.test_dataloader  # what lets MMPoseInferencer build from the config
        assert cfg.default_hooks.test_collate == dict(type='IPRTestCollateHook')


def test_the_hooks_collate_function(coco_sample):
    with pytest.raises(ValueError, match="'no_such_collate' is not a function registered"):
        HOOKS.build(dict(type='IPRTestCollateHook', collate_fn=dict(type='no_such_collate')))
    assert IPRTestCollateHook().collate_fn.func is ipr_collate
    hook = IPRTestCollateHook(dict(type='default_collate'))
    assert hook.collate_fn([torch.zeros(2), torch.ones(2)]).shape == (2, 2)

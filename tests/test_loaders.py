"""mmengine's worker seeding with non-persistent workers, without shuffling, augments each sample in every epoch
as in the one before: the warning, and the behaviour behind it, on the sample config's real pipeline."""
import copy

import torch
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import ipr_plugin  # noqa: F401
import ipr_plugin.engine.loaders as module
from utils import runner_log, sample_runner_cfg


def _loader_cfg(coco_sample, tmp_path, persistent: bool) -> dict:
    cfg = sample_runner_cfg(coco_sample, tmp_path, dict(by_epoch=True, max_epochs=1), logger_interval=1)
    loader = copy.deepcopy(cfg.train_dataloader)
    loader.update(num_workers=1, persistent_workers=persistent, sampler=dict(type='DefaultSampler', shuffle=False))
    return loader


def _two_epochs(loader):
    return [torch.cat([batch['inputs'][0] for batch in loader]) for _ in range(2)]


def test_non_persistent_workers_repeat_each_epochs_augmentation_and_are_warned_of(coco_sample, tmp_path,
                                                                                   monkeypatch):
    init_default_scope('mmpose')  # as the Runner sets it
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda message, **kwargs: logged.append(message))
    loader = Runner.build_dataloader(_loader_cfg(coco_sample, tmp_path, persistent=False), seed=0)
    [message] = logged
    assert message.startswith('IPRCocoDataset is read in the same order every epoch (shuffle=False) by 1 '
                              'non-persistent worker (persistent_workers=False)')
    assert 'each epoch augments each sample as the one before did' in message
    assert 'Set train_dataloader.persistent_workers=True' in message
    first, second = _two_epochs(loader)
    assert torch.equal(first, second)  # what the warning is about: the same flips and box jitter again

    logged.clear()
    loader = Runner.build_dataloader(_loader_cfg(coco_sample, tmp_path, persistent=True), seed=0)
    first, second = _two_epochs(loader)
    assert logged == [] and not torch.equal(first, second)
    # shuffled, the same random numbers fall to other samples: no sample is augmented as before
    loader = Runner.build_dataloader(dict(_loader_cfg(coco_sample, tmp_path, persistent=False),
                                          sampler=dict(type='DefaultSampler', shuffle=True)), seed=0)
    assert logged == []
    # no augmentation to repeat: a validation set (test_mode, also inside a wrapper), or no worker processes; an
    # InfiniteSampler starts its workers once
    cfg = sample_runner_cfg(coco_sample, tmp_path, dict(by_epoch=True, max_epochs=1), logger_interval=1)
    val = dict(cfg.val_dataloader, num_workers=1, persistent_workers=False)
    Runner.build_dataloader(val, seed=0)
    Runner.build_dataloader(dict(val, dataset=dict(type='ConcatDataset', datasets=[val['dataset']] * 2)), seed=0)
    Runner.build_dataloader(dict(_loader_cfg(coco_sample, tmp_path, False), num_workers=0,
                                 persistent_workers=False), seed=0)
    Runner.build_dataloader(dict(_loader_cfg(coco_sample, tmp_path, False),
                                 sampler=dict(type='InfiniteSampler', shuffle=False)), seed=0)
    assert logged == []


def test_the_runner_logs_it_for_its_training_loader(coco_sample, tmp_path):
    cfg = sample_runner_cfg(coco_sample, tmp_path, dict(by_epoch=True, max_epochs=1), logger_interval=1)
    cfg.train_dataloader.update(num_workers=1, persistent_workers=False,
                                sampler=dict(type='DefaultSampler', shuffle=False))
    cfg.visualizer.name = 'visualizer_loader_seeds'
    runner = Runner.from_cfg(cfg)
    runner.train_loop  # builds the training loader, as train() does first
    assert 'non-persistent worker (persistent_workers=False)' in runner_log(runner)


def test_pinned_memory_is_turned_off_without_an_accelerator(coco_sample, tmp_path, monkeypatch):
    """The fast configs pin memory; on a CPU-only machine torch ignores that and warns each time workers start."""
    import warnings
    init_default_scope('mmpose')
    cfg = _loader_cfg(coco_sample, tmp_path, persistent=False)
    cfg.update(pin_memory=True, num_workers=0, persistent_workers=False)
    monkeypatch.setattr(module, 'accelerator_available', lambda: False)
    loader = Runner.build_dataloader(copy.deepcopy(cfg), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # torch's "'pin_memory' argument is set as true but no accelerator"
        next(iter(loader))
    assert loader.pin_memory is False
    monkeypatch.setattr(module, 'accelerator_available', lambda: True)  # kept where there is a device
    assert Runner.build_dataloader(copy.deepcopy(cfg), seed=0).pin_memory is True

"""What the plugin adds to mmengine's ``Runner.build_dataloader``: a warning where mmengine's worker seeding makes
every epoch augment each sample as the one before, and pinned memory only where there is a device to pin for.

mmengine's ``Runner.build_dataloader`` gives each loader worker ``worker_init_fn``, which seeds NumPy, ``random``
and torch with ``seed + worker_id (+ rank * num_workers)`` (the Runner always has a seed: one is drawn where the
config sets none). Non-persistent workers are started again for every pass over the data, so every epoch's
workers start from the same seeds and draw the same random numbers in the same order. mmpose's random transforms
(flip, box jitter, half-body, rotation) draw from NumPy's global generator: read in the same order (no shuffling),
each sample is then augmented in every epoch as in the first, without a word. Persistent workers (mmpose's configs
and the plugin's set them) keep their generators running from epoch to epoch.

``pin_memory=True`` (the fast configs') on a machine without an accelerator pins nothing: torch ignores it and
warns each time a loader starts its workers. The plugin turns it off there, so that testing a fast config on a
CPU (as the README does) runs as quietly as the plain config.
"""
import logging
from functools import partial, wraps

import torch
from mmengine.dataset import InfiniteSampler
from mmengine.dataset import worker_init_fn as mmengine_worker_init_fn
from mmengine.logging import print_log
from mmengine.runner import FlexibleRunner, Runner
from torch.utils.data import DataLoader

from .patching import install


def _in_test_mode(dataset) -> bool:
    """Whether ``dataset`` is a validation or test set (mmpose's ``test_mode``), looking through mmengine's and
    mmpose's wrappers (``datasets``: all of them; ``dataset``: the one wrapped)."""
    if hasattr(dataset, 'test_mode'):
        return bool(dataset.test_mode)
    inner = getattr(dataset, 'datasets', None)
    if inner:
        return all(_in_test_mode(d) for d in inner)
    inner = getattr(dataset, 'dataset', None)
    return inner is not None and _in_test_mode(inner)


def repeated_augmentation_problem(loader) -> str:
    """Why ``loader``'s workers would augment each sample in every epoch as in the one before, or ``''``: a
    training set (not in ``test_mode``) read in the same order every epoch (a sampler with ``shuffle=False``; an
    ``InfiniteSampler`` starts its workers once) by non-persistent workers that mmengine's ``worker_init_fn``
    seeds. With shuffling, the same random numbers fall to other samples each epoch, which leaves no such trace."""
    if not isinstance(loader, DataLoader) or loader.num_workers == 0 or loader.persistent_workers:
        return ''
    init = loader.worker_init_fn
    if not (isinstance(init, partial) and init.func is mmengine_worker_init_fn):
        return ''
    sampler = getattr(loader.batch_sampler, 'sampler', None) or loader.sampler
    if isinstance(sampler, InfiniteSampler) or getattr(sampler, 'shuffle', True) or _in_test_mode(loader.dataset):
        return ''
    workers = f'{loader.num_workers} non-persistent worker' + ('s' if loader.num_workers > 1 else '')
    return (f'{type(loader.dataset).__name__} is read in the same order every epoch (shuffle=False) by {workers} '
            "(persistent_workers=False), which mmengine's worker_init_fn seeds alike every time it starts them, "
            'that is every epoch: each epoch augments each sample as the one before did. Set '
            "train_dataloader.persistent_workers=True (mmpose's configs and the plugin's do), shuffle, or give the "
            'loader a worker_init_fn of your own')


def accelerator_available() -> bool:
    """Whether torch has a device to pin host memory for (CUDA, or another accelerator torch knows)."""
    accelerator = getattr(torch, 'accelerator', None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def _wrap_build_dataloader(build_dataloader):
    @wraps(build_dataloader)
    def wrapper(*args, **kwargs):
        loader = build_dataloader(*args, **kwargs)
        if isinstance(loader, DataLoader) and loader.pin_memory and not accelerator_available():
            loader.pin_memory = False
        problem = repeated_augmentation_problem(loader)
        if problem:
            print_log(problem, logger='current', level=logging.WARNING)
        return loader
    return wrapper


def patch_loaders() -> None:
    """As a loader is built: warn where :func:`repeated_augmentation_problem` finds one, and turn pinned memory off
    without an accelerator (idempotent)."""
    for runner_class in (Runner, FlexibleRunner):
        install(runner_class, 'build_dataloader', _wrap_build_dataloader)

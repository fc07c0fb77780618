"""A warning where mmengine's worker seeding makes every epoch repeat the same augmentation.

mmengine's ``Runner.build_dataloader`` gives each loader worker ``worker_init_fn``, which seeds NumPy, ``random``
and torch with ``seed + worker_id (+ rank * num_workers)`` (the Runner always has a seed: one is drawn where the
config sets none). Non-persistent workers are started again for every pass over the data, so every epoch's
workers start from the same seeds and draw the same random numbers: mmpose's random transforms (flip, box jitter,
half-body, rotation), which draw from NumPy's global generator, then augment each sample the same way in every
epoch. Training sees one fixed augmentation of the data instead of a new one per epoch, without a word. Persistent
workers (mmpose's configs and the plugin's set them) keep their generators running from epoch to epoch.
"""
import logging
from functools import partial, wraps

from mmengine.dataset import worker_init_fn as mmengine_worker_init_fn
from mmengine.logging import print_log
from mmengine.runner import FlexibleRunner, Runner
from torch.utils.data import DataLoader

from .patching import install


def repeated_augmentation_problem(loader) -> str:
    """Why ``loader``'s workers would repeat each epoch's random augmentation, or ``''``: a training set (not
    ``test_mode``) loaded by non-persistent workers that mmengine's ``worker_init_fn`` seeds."""
    if not isinstance(loader, DataLoader) or loader.num_workers == 0 or loader.persistent_workers:
        return ''
    init = loader.worker_init_fn
    if not (isinstance(init, partial) and init.func is mmengine_worker_init_fn):
        return ''
    if getattr(loader.dataset, 'test_mode', False):  # mmpose's validation and test sets: no random transforms
        return ''
    return (f'{type(loader.dataset).__name__} is loaded by {loader.num_workers} non-persistent workers '
            "(persistent_workers=False), which mmengine's worker_init_fn seeds alike every time it starts them, "
            'that is every epoch: each epoch repeats the same random augmentation of each sample. Set '
            "persistent_workers=True in the dataloader (mmpose's configs and the plugin's do), or give it a "
            'worker_init_fn of your own')


def _wrap_build_dataloader(build_dataloader):
    @wraps(build_dataloader)
    def wrapper(*args, **kwargs):
        loader = build_dataloader(*args, **kwargs)
        problem = repeated_augmentation_problem(loader)
        if problem:
            print_log(problem, logger='current', level=logging.WARNING)
        return loader
    return wrapper


def patch_loader_seeds() -> None:
    """Warn, as a loader is built, where :func:`repeated_augmentation_problem` finds one (idempotent)."""
    for runner_class in (Runner, FlexibleRunner):
        install(runner_class, 'build_dataloader', _wrap_build_dataloader)

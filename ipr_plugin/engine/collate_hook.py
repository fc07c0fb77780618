"""Testing (``mim test``) with the collate function validation uses, which the config cannot name for it."""
import logging
from functools import partial
from typing import Callable, Optional, Tuple

from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import FUNCTIONS
from mmpose.registry import HOOKS
from torch.utils.data import DataLoader


@HOOKS.register_module()
class IPRTestCollateHook(Hook):
    """Give the Runner's test loader ``collate_fn`` before its first batch.

    mmengine's inferencer (behind mmpose's ``MMPoseInferencer``) reads ``test_dataloader.collate_fn`` as a
    registry name and fails on the dict the Runner needs there, so a config that serves both leaves it out and
    tests with ``pseudo_collate``: every sample's image then crosses from a loader worker as a tensor of its own.
    This hook sets the collate function on the test loader the Runner built, before its workers start, where that
    loader collates with mmengine's default ``pseudo_collate`` (a ``collate_fn`` the config names is kept), so
    that ``mim test`` moves batches as validation during training does; after the test it puts the loader's own
    back (a loader object given for validation too is left as it was). With ``IPRDataPreprocessor``, which takes
    both kinds of batch, samples, predictions and metrics are the same either way; only the transfer changes.

    Args:
        collate_fn (dict): as a dataloader config's ``collate_fn``: ``type`` a name in mmengine's ``FUNCTIONS``
            (``'ipr_collate'``), the other keys its keyword arguments. Default ``dict(type='ipr_collate')``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, collate_fn: Optional[dict] = None) -> None:
        collate_fn = dict(collate_fn or dict(type='ipr_collate'))
        name = collate_fn.pop('type')
        function = FUNCTIONS.get(name) if isinstance(name, str) else name
        if not callable(function):
            raise ValueError(f'IPRTestCollateHook: collate_fn type {name!r} is not a function registered in '
                             "mmengine's FUNCTIONS")
        self.collate_fn = partial(function, **collate_fn)
        self._replaced: Optional[Tuple[DataLoader, Callable]] = None

    def before_test(self, runner) -> None:
        loader = getattr(runner.test_loop, 'dataloader', None)
        if not isinstance(loader, DataLoader):
            print_log(f'IPRTestCollateHook: the test loader is a {type(loader).__name__}, not a torch DataLoader; '
                      'its batches are left as they are', logger='current', level=logging.WARNING)
            return
        built_from = runner.cfg.get('test_dataloader') if runner.cfg is not None else None
        named = isinstance(built_from, dict) and 'collate_fn' in built_from  # not a DataLoader object given
        own = loader.collate_fn
        if not named and (own.func if isinstance(own, partial) else own) is pseudo_collate:
            self._replaced = (loader, own)
            loader.collate_fn = self.collate_fn

    def after_test(self, runner) -> None:
        if self._replaced is not None:
            loader, own = self._replaced
            loader.collate_fn = own
            self._replaced = None

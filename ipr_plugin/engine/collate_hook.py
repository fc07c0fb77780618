"""Testing (``mim test``) with the collate function validation uses, which the config cannot name for it."""
from functools import partial
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import FUNCTIONS
from mmpose.registry import HOOKS
from torch.utils.data import DataLoader


@HOOKS.register_module()
class IPRTestCollateHook(Hook):
    """Give the Runner's test loader ``collate_fn`` before its first batch.

    mmengine's inferencer (behind mmpose's ``MMPoseInferencer``) reads ``test_dataloader.collate_fn`` as a
    registry name and fails on the dict the Runner needs there, so a config that serves both leaves it out and
    tests with ``pseudo_collate``: every sample's image then crosses from a loader worker as a tensor of its own.
    This hook sets the collate function on the test loader the Runner built, before its workers start (replacing
    the one it was built with: ``pseudo_collate`` where the config names none), so that ``mim test`` moves
    batches as validation during training does. With ``IPRDataPreprocessor``, which takes both kinds of batch,
    samples, predictions and metrics are the same either way; only the transfer changes.

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

    def before_test(self, runner) -> None:
        loader = runner.test_loop.dataloader
        if not isinstance(loader, DataLoader):
            raise TypeError(f'IPRTestCollateHook: the test loader is a {type(loader).__name__}, not a torch '
                            'DataLoader whose collate_fn could be set')
        loader.collate_fn = self.collate_fn

"""Testing (``mim test``) with the collate function validation uses, which the config cannot name for it."""
import logging
from functools import partial
from typing import Callable, Optional, Tuple

from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import FUNCTIONS
from mmengine.runner import Runner
from mmpose.registry import HOOKS
from torch.utils.data import DataLoader

from ..models.data_preprocessors.ipr_data_preprocessor import IPRDataPreprocessor
from .model import bare_model


@HOOKS.register_module()
class IPRTestCollateHook(Hook):
    """Give the Runner's test loader ``collate_fn`` before its first batch.

    mmengine's inferencer (behind mmpose's ``MMPoseInferencer``) reads ``test_dataloader.collate_fn`` as a
    registry name and fails on the dict the Runner needs there, so a config that serves both leaves it out and
    tests with ``pseudo_collate``: every sample's image then crosses from a loader worker as a tensor of its own.
    This hook sets the collate function on the test loader the Runner built, before its workers start, where that
    loader collates with mmengine's default ``pseudo_collate`` (a ``collate_fn`` the config names is kept) and the
    model's data preprocessor is ``IPRDataPreprocessor``, which takes both kinds of batch: ``mim test`` then moves
    batches as validation during training does, with the same samples, predictions and metrics. After the test
    the loader gets its own function back, so that a DataLoader object shared with validation is left as it was.

    Args:
        collate_fn (dict): as a dataloader config's ``collate_fn``: ``type`` a name in mmengine's ``FUNCTIONS``
            (``'ipr_collate'``), the other keys its keyword arguments. Default ``dict(type='ipr_collate')``.
    """

    def __init__(self, collate_fn: Optional[dict] = None) -> None:
        collate_fn = dict(collate_fn or dict(type='ipr_collate'))
        name = collate_fn.pop('type')
        function = FUNCTIONS.get(name) if isinstance(name, str) else name
        if not callable(function):
            raise ValueError(f'IPRTestCollateHook: collate_fn type {name!r} is not a function registered in '
                             "mmengine's FUNCTIONS")
        self.collate_fn = partial(function, **collate_fn)
        self._replaced: Optional[Tuple[DataLoader, Callable]] = None

    def before_test(self, runner: Runner) -> None:
        """Set the collate function on the test loader where it would collate with ``pseudo_collate``."""
        loader = getattr(runner.test_loop, 'dataloader', None)
        model = bare_model(runner)
        preprocessor = getattr(model, 'data_preprocessor', None)
        if not isinstance(loader, DataLoader) or not isinstance(preprocessor, IPRDataPreprocessor):
            what = (f'the test loader is a {type(loader).__name__}, not a torch DataLoader'
                    if not isinstance(loader, DataLoader) else
                    f'the data preprocessor is {type(preprocessor).__name__}, not IPRDataPreprocessor')
            print_log(f'IPRTestCollateHook: {what}; the test batches are collated as the loader does',
                      logger='current', level=logging.WARNING)
            return
        config = runner.cfg.get('test_dataloader')  # a dict, or the DataLoader object the Runner was given
        named = isinstance(config, dict) and 'collate_fn' in config
        own = loader.collate_fn
        if not named and (own.func if isinstance(own, partial) else own) is pseudo_collate:
            self._replaced = (loader, own)
            loader.collate_fn = self.collate_fn

    def after_test(self, runner: Runner) -> None:
        """Give the test loader its own collate function back."""
        if self._replaced is not None:
            loader, own = self._replaced
            loader.collate_fn = own
            self._replaced = None

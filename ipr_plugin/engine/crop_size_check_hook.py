"""Refuse, before training, a validation pipeline whose crops are of another size than ``IPRHead`` decodes for."""
from typing import Any, List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmpose.registry import HOOKS

from .logged import logged
from .model import bare_model


def config_crop_sizes(dataloader_cfg: Any) -> List[Tuple[int, int]]:
    """The ``input_size`` (w, h) of every ``TopdownAffine`` (mmpose's, the plugin's ``IPRTopdownAffine``) in a
    dataloader's config, wrapped datasets (``CombinedDataset``, ``ConcatDataset``, ...) included: read from the
    config, so that nothing is built for it."""
    found: List[Tuple[int, int]] = []
    if isinstance(dataloader_cfg, dict):
        kind = dataloader_cfg.get('type')
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        size = dataloader_cfg.get('input_size')
        if name.split('.')[-1].endswith('TopdownAffine') and isinstance(size, (tuple, list)) and len(size) == 2:
            found.append((int(size[0]), int(size[1])))
        for value in dataloader_cfg.values():
            found += config_crop_sizes(value)
    elif isinstance(dataloader_cfg, (list, tuple)):
        for value in dataloader_cfg:
            found += config_crop_sizes(value)
    return found


@HOOKS.register_module()
class CropSizeCheckHook(Hook):
    """Refuse, before the first training iteration, a ``val_dataloader`` whose ``TopdownAffine`` crops are of
    another size than the ``IPRHead``'s ``decoder.input_size``; warn about such a ``test_dataloader``.

    ``IPRHead`` refuses crops of another size than it decodes for (every keypoint would be decoded to the wrong
    pixels), but it sees validation's only at the first validation, a whole ``val_interval`` of training later. A
    child config that changes the input size and restates the train pipeline but not the val pipeline (or sets
    ``val_dataloader`` but not ``test_dataloader``, which the base copied before the child changed it) would train
    for that long first. The test pipeline only warns: a training run does not test, and ``mim test`` refuses it at
    its first batch.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        from ipr_plugin.models.heads import IPRHead  # models build on engine
        from ipr_plugin.models.heads.head_inputs import crop_size_problem
        head = getattr(bare_model(runner), 'head', None)
        decoder_size: Optional[tuple] = getattr(getattr(head, 'decoder', None), 'input_size', None)
        if not isinstance(head, IPRHead) or decoder_size is None:
            return
        for name in ('val_dataloader', 'test_dataloader'):
            if name == 'val_dataloader' and runner._val_loop is None:  # no validation in this run
                continue
            problem = next(filter(None, (crop_size_problem(size, decoder_size)
                                         for size in config_crop_sizes(runner.cfg.get(name)))), None)
            if problem and name == 'val_dataloader':
                raise logged(ValueError(f'{name}: {problem}'))
            if problem:
                MMLogger.get_current_instance().warning(f'{name}: {problem}; `mim test` would refuse it')

"""mmengine's ``RuntimeInfoHook`` without a host synchronisation in every training iteration."""
from typing import Dict, List

import torch
from mmengine.hooks import RuntimeInfoHook
from mmengine.utils import apply_to
from mmpose.registry import HOOKS

from .deferred import DeferredOutputsMixin


@HOOKS.register_module()
class IPRRuntimeInfoHook(DeferredOutputsMixin, RuntimeInfoHook):
    """``RuntimeInfoHook`` that hands the model's logged values to the message hub in batches.

    mmengine's hook calls ``.item()`` on every loss and metric tensor after every training step. Each call
    waits for the GPU to finish that step, so the CPU cannot queue the next one while the GPU works, and the
    GPU idles while the CPU prepares it. This hook keeps the (detached, on-device) values of the iterations in
    between and copies them to the host together, with one synchronisation per dtype, on every iteration
    the ``LoggerHook`` logs and whenever anything else may read the message hub (end of epoch or training,
    before validation, before a checkpoint is saved). The logs and the message hub then hold exactly the
    values, in the same order, that ``RuntimeInfoHook`` would have given them.

    Use it in place of the default one::

        default_hooks = dict(runtime_info=dict(type='IPRRuntimeInfoHook'))

    Args:
        interval (int, optional): Flush at least every ``interval`` iterations; the logger's interval is
            always honoured (the two are combined by their greatest common divisor). Default: the logger's
            interval (every iteration without a ``LoggerHook``). Anything else that reads ``train/*``
            scalars between two flushes sees them up to the last flush.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        had_pending = bool(self._pending)
        super().before_save_checkpoint(runner, checkpoint)  # flushes
        if had_pending and 'message_hub' in checkpoint:
            # The Runner copied the hub into the checkpoint before calling this hook: copy it again, as it does,
            # so that a resumed run continues from the same smoothed values as an uninterrupted one.
            checkpoint['message_hub'] = apply_to(runner.message_hub.state_dict(), lambda x: hasattr(x, 'cpu'),
                                                 lambda x: x.cpu())

    def keep(self, runner, outputs: dict) -> Dict[str, object]:
        return {key: value.detach() if isinstance(value, torch.Tensor) else value for key, value in outputs.items()}

    def flush(self, runner) -> None:
        """Give every pending value to the message hub, in iteration order."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        host = _to_host([value for outputs in pending for value in outputs.values()])
        values = iter(host)
        for outputs in pending:
            for key in outputs:
                runner.message_hub.update_scalar(f'train/{key}', next(values))


def _to_host(values: List[object]) -> List[object]:
    """``values`` with every one-element tensor replaced by its Python number (as ``.item()`` would give it),
    copying all tensors of one device and dtype in a single transfer."""
    groups: Dict[tuple, List[int]] = {}
    for i, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f'IPRRuntimeInfoHook: a logged value must have one element, got shape '
                                 f'{tuple(value.shape)}')
            groups.setdefault((value.device, value.dtype), []).append(i)
    out = list(values)
    for indices in groups.values():
        numbers = torch.stack([values[i].reshape(()) for i in indices]).tolist()
        for i, number in zip(indices, numbers):
            out[i] = number
    return out

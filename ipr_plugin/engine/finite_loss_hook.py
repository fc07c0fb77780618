"""Stop training at a non-finite loss, naming the iteration, instead of training on with NaN weights."""
from typing import List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmpose.registry import HOOKS

from .deferred import DeferredOutputsMixin


@HOOKS.register_module()
class FiniteLossHook(DeferredOutputsMixin, Hook):
    """Raise ``FloatingPointError`` when a loss term is NaN or infinite.

    Without it mmengine logs ``loss: nan`` and trains on: the optimizer step writes NaN into the weights, the
    checkpoints saved after it are unusable, and the first error comes at the next validation (``IPRHead``
    refuses NaN logits), possibly epochs later. This hook stops the run at the first logging iteration (or end
    of epoch, validation, checkpoint, whichever comes first) after the loss turned non-finite, before anything
    is saved, and names the first such iteration and every loss term's value in it.

    Checking costs no host synchronisation per iteration: each iteration's loss terms (the outputs whose name
    contains ``loss``) stay on the device until :class:`DeferredOutputsMixin` flushes them with the logger.

    Args:
        interval (int, optional): check at least every ``interval`` iterations (see
            :class:`DeferredOutputsMixin`). Default: the logger's interval.
    """

    priority = 'NORMAL'  # after_train_iter before LoggerHook (BELOW_NORMAL) and CheckpointHook (VERY_LOW)

    def keep(self, runner, outputs: dict) -> Optional[Tuple[int, int, List[str], torch.Tensor]]:
        names = [key for key, value in outputs.items() if 'loss' in key and isinstance(value, torch.Tensor)]
        if not names:
            return None
        values = torch.stack([outputs[key].detach().reshape(()).float() for key in names])
        return runner.iter + 1, runner.epoch + 1, names, values

    def flush(self, runner) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        # One transfer for the whole batch of iterations; the values themselves are read only for the message.
        finite = torch.isfinite(torch.cat([values.to(pending[0][3].device) for *_, values in pending])).cpu()
        start = 0
        for iteration, epoch, names, values in pending:
            if not finite[start:start + len(names)].all():
                terms = ', '.join(f'{name}={value}' for name, value in zip(names, values.tolist()))
                raise FloatingPointError(
                    f'FiniteLossHook: the loss is not finite at iteration {iteration} (epoch {epoch}): {terms}. '
                    'The optimizer step wrote it into the weights, so training stops here, before they are saved '
                    'or validated. Lower the learning rate (or enable gradient clipping, optim_wrapper.clip_grad) '
                    'and resume from the last checkpoint, or check the samples of that iteration.')
            start += len(names)

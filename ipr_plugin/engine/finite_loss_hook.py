"""Stop training at a non-finite loss or non-finite weights, naming where, instead of training on with NaN weights."""
import logging
from typing import Any, Iterable, List, Optional, Tuple

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpose.registry import HOOKS

from .agree import gather_if_any
from .deferred import DeferredOutputsMixin
from .logged import logged
from .model import bare_model

_ADVICE = ('Lower the learning rate (or enable gradient clipping, optim_wrapper.clip_grad) and resume from the last '
           'checkpoint, or check the samples of that iteration.')

# The checkpoint's meta entry with the non-finite iterations in a row up to it, (iteration, epoch, loss terms) each.
_RUN_KEY = 'finite_loss_run'


@HOOKS.register_module()
class FiniteLossHook(DeferredOutputsMixin, Hook):
    """Raise ``FloatingPointError`` when a loss term is NaN or infinite, or before saving non-finite weights.

    Without it mmengine logs ``loss: nan`` and trains on: the optimizer step writes NaN into the weights, the
    checkpoints saved after it are unusable, and the first error comes at the next validation (``IPRHead``
    refuses NaN logits), possibly epochs later. This hook stops the run at the first logging iteration (or end
    of epoch, validation, checkpoint, whichever comes first) after the loss turned non-finite, and names the
    first such iteration and every loss term's value in it. A step can also write NaN into the weights while its
    own loss is still finite (a NaN gradient, or batch-norm statistics of overflowing activations); the loss shows
    it one iteration later, so the weights are checked too: before a validation within training (one device
    synchronisation per validation) and before a checkpoint saves them (on the host copy mmengine saves).

    Checking the loss costs no host synchronisation per iteration: each iteration's loss terms (the outputs whose
    name contains ``loss``) stay on the device until :class:`DeferredOutputsMixin` flushes them with the logger.

    In distributed training the processes agree at each check that every process passes (logging iterations, ends
    of epochs, validations, the end of training: one all-reduce of one number, :func:`~.agree.gather_if_any`), so
    all of them stop at the same iteration with the same message, which names the first process whose loss (or
    weights: batch-norm statistics are each process's own) turned non-finite, and the run's log file, which
    process 0 alone writes, says why the run ended. The check of the weights to be saved runs in the saving
    process alone (mmengine saves from process 0 only).

    With a dynamic loss scaler (``AmpOptimWrapper`` in float16) a non-finite loss is what the scaler handles by
    skipping that step, so the hook warns instead, and raises only when the loss has been non-finite in
    ``max_skipped`` iterations in a row (the scaler is not recovering; counted across checks, so a check over a
    single iteration is no reason, and across a resume, which the checkpoint's ``meta`` carries the count to; in
    distributed training that is the saving process's count, which every process resumes with) or the weights to
    be saved are not finite.

    Args:
        interval (int, optional): check at least every ``interval`` iterations (see
            :class:`DeferredOutputsMixin`). Default: the logger's interval.
        max_skipped (int): with a loss scaler, the non-finite iterations in a row that stop training. Default
            16: a scaler that halves its scale at each skipped step (torch's, mmengine's) has then brought its
            default 2^16 down to 1, and no smaller scale keeps float16 gradients useful.
    """

    priority = 'NORMAL'  # after_train_iter before LoggerHook (BELOW_NORMAL) and CheckpointHook (VERY_LOW)

    def __init__(self, interval: Optional[int] = None, max_skipped: int = 16) -> None:
        super().__init__(interval)
        if max_skipped < 1:
            raise ValueError(f'FiniteLossHook: max_skipped must be >= 1, got {max_skipped}')
        self.max_skipped = max_skipped
        self._scaled = False
        self._run: List[Tuple[int, int, str]] = []  # the non-finite iterations in a row up to the last check
        self._loaded: Tuple[Optional[int], list] = (None, [])  # a loaded checkpoint's iteration and run
        self._training = False  # between before_train and after_train: validations within training

    def before_run(self, runner) -> None:
        super().before_run(runner)
        self._training = False  # Runner.val() after a train() that raised (and so never reached after_train)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        self._scaled = scaler is not None and scaler.is_enabled()
        # A resumed run (training goes on from the checkpoint's iteration, with the scaler's state, scale included)
        # counts on from the checkpoint's run; a run fine-tuning from load_from starts afresh.
        iteration, run = self._loaded
        self._run = [tuple(step) for step in run] if iteration == runner.iter else []
        self._training = True

    def keep(self, runner, outputs: dict) -> Optional[Tuple[int, int, List[str], torch.Tensor]]:
        """(iteration, epoch, the loss terms' names, their (T,) float32 values still on the device), 1-based."""
        names = [key for key, value in outputs.items() if 'loss' in key and isinstance(value, torch.Tensor)]
        if not names:
            return None
        # a term with several elements (a custom model's) counts as non-finite when any element is
        values = torch.stack([outputs[key].detach().float().reshape(-1).sum() for key in names])
        return runner.iter + 1, runner.epoch + 1, names, values

    def flush(self, runner, everywhere: bool = True) -> None:
        """Check the pending iterations' losses; ``everywhere``: every process is here (agree, see the class)."""
        if not self._pending:  # the same in every process: each keeps the same iterations
            return
        pending, self._pending = self._pending, []
        # One transfer for the whole batch of iterations; the values themselves are read only for the message.
        finite = torch.isfinite(torch.cat([values.to(pending[0][3].device) for *_, values in pending])).cpu()
        mine, start = [], 0  # per iteration: the loss terms' text where not finite, else None
        for _, _, names, values in pending:
            ok = bool(finite[start:start + len(names)].all())
            mine.append(None if ok else ', '.join(f'{n}={v}' for n, v in zip(names, values.tolist())))
            start += len(names)
        found = _where(mine, everywhere)
        bad = []
        for (iteration, epoch, *_), terms in zip(pending, found):
            if terms is None:
                self._run = []
            else:
                bad.append((iteration, epoch, terms))
                self._run.append(bad[-1])
        if not bad:
            return
        iteration, epoch, terms = bad[0]
        where = f'at iteration {iteration} (epoch {epoch}): {terms}'
        if not self._scaled:
            raise logged(FloatingPointError(
                f'FiniteLossHook: the loss is not finite {where}. The optimizer step wrote it into the weights, so '
                f'training stops here, before they are saved or validated. {_ADVICE}'))
        if len(self._run) >= self.max_skipped:
            iteration, epoch, terms = self._run[0]
            raise logged(FloatingPointError(
                f'FiniteLossHook: the loss is not finite in {len(self._run)} iterations in a row, up to '
                f'{self._run[-1][0]}, the first at iteration {iteration} (epoch {epoch}): {terms}: the loss scaler '
                f'skips those steps but is not recovering. {_ADVICE}'))
        print_log(f'FiniteLossHook: the loss is not finite in {len(bad)} of the last {len(pending)} iterations, '
                  f'the first {where}; the loss scaler skipped those steps', logger='current', level=logging.WARNING)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta') or {}
        self._loaded = (meta.get('iter'), list(meta.get(_RUN_KEY) or []))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # the losses first, their message says more; in the saving process alone (no agreeing: the others are not
        # here), though DeferredOutputsMixin flushes at every iteration a checkpoint is saved in, so rarely any
        self.flush(runner, everywhere=False)
        super().before_save_checkpoint(runner, checkpoint)
        checkpoint.setdefault('meta', {})[_RUN_KEY] = [list(step) for step in self._run]  # plain, for weights_only
        iteration = checkpoint.get('meta', {}).get('iter')
        self._check_weights(checkpoint.get('state_dict', {}).items(), f'to be saved after iteration {iteration}',
                            'Nothing is saved.')

    def before_val(self, runner) -> None:
        super().before_val(runner)  # the losses first
        if self._training:  # a validation within training: not of weights already broken, to save them after it
            self._check_weights(bare_model(runner).state_dict().items(), f'after iteration {runner.iter}',
                                'Nothing is validated or saved.', everywhere=True)

    def after_train(self, runner) -> None:
        super().after_train(runner)
        self._training = False

    @staticmethod
    def _check_weights(items: Iterable[Tuple[str, Any]], when: str, consequence: str,
                       everywhere: bool = False) -> None:
        """Raise naming the first non-finite floating-point tensors of a state dict's ``items`` (one host sync);
        ``everywhere``: every process is here and checks its own (agree, see the class)."""
        state = [(k, v) for k, v in items if isinstance(v, torch.Tensor) and v.is_floating_point()]
        names = []
        if state:
            finite = torch.stack([torch.isfinite(v).all().to(state[0][1].device) for _, v in state]).cpu()
            names = [k for (k, _), ok in zip(state, finite.tolist()) if not ok]
        gathered = gather_if_any(bool(names), names) if everywhere else ([names] if names else None)
        if not gathered:
            return
        rank, names = next((r, n) for r, n in enumerate(gathered) if n)
        more = f' and {len(names) - 3} more' if len(names) > 3 else ''
        if everywhere and get_world_size() > 1:
            when = f'{when} in process {rank} of {get_world_size()}'
            if rank:  # process 0 saved its own weights, which were finite
                consequence = ("Nothing is validated; the checkpoints hold process 0's weights, which are finite "
                               "(batch-norm statistics are each process's own).")
        raise logged(FloatingPointError(
            f'FiniteLossHook: the weights {when} are not finite ({", ".join(names[:3])}{more}) although the loss '
            'was finite so far: a step wrote them (a non-finite gradient, or batch-norm statistics of activations '
            f'that overflowed; the loss shows it one iteration later). {consequence} {_ADVICE}'))


def _where(mine: List[Optional[str]], everywhere: bool) -> List[Optional[str]]:
    """Per pending iteration, the loss terms of the first process whose loss was not finite in it (in distributed
    training followed by that process's rank), else None; ``mine``: this process's (see ``flush``)."""
    world = get_world_size()
    if world == 1:
        return mine
    if not everywhere:  # this process alone
        return [terms and f'{terms} (process {get_rank()})' for terms in mine]
    gathered = gather_if_any(any(terms is not None for terms in mine), mine)
    if not gathered:
        return [None] * len(mine)
    return [next((f'{theirs[i]} (process {rank} of {world})' for rank, theirs in enumerate(gathered)
                  if theirs[i] is not None), None) for i in range(len(mine))]

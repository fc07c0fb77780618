"""Reading a training iteration's outputs on the host without a synchronisation in every iteration."""
import math
from typing import List, Optional

from mmengine.hooks import CheckpointHook, LoggerHook


class DeferredOutputsMixin:
    """Mixin for hooks that read the model's outputs: keep them on the device, read them in batches.

    Calling ``.item()`` (or ``bool()``) on a tensor the GPU is still computing waits for the whole step, so the
    CPU cannot queue the next one while the GPU works. A hook with this mixin keeps what :meth:`keep` returns for
    each training iteration and hands the list to :meth:`flush` on every iteration the ``LoggerHook`` logs (when
    its values are copied to the host anyway) and whenever anything else may read them: end of an epoch or of
    training, before validation, in every iteration that saves a checkpoint and before it is saved.

    Put it before the hook class in the bases (``class H(DeferredOutputsMixin, Hook)``); its ``after_train_iter``
    replaces the base class's, the other methods call it.

    Args:
        interval (int, optional): flush at least every ``interval`` iterations; the logger's interval is always
            honoured (the two are combined by their greatest common divisor). Default: the logger's interval
            (every iteration without a ``LoggerHook``).
    """

    def __init__(self, interval: Optional[int] = None) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'{type(self).__name__}: interval must be >= 1, got {interval}')
        self.interval = interval
        self._every = interval or 1
        self._pending: List[object] = []
        self._savers: List[CheckpointHook] = []

    def keep(self, runner, outputs: dict) -> Optional[object]:
        """What to keep of one iteration's ``outputs`` (None: nothing); must not wait for the device."""
        raise NotImplementedError

    def flush(self, runner) -> None:
        """Read ``self._pending`` (what :meth:`keep` returned, in iteration order) and empty it."""
        raise NotImplementedError

    def before_train(self, runner) -> None:
        super().before_train(runner)
        loggers = [hook.interval for hook in runner.hooks if isinstance(hook, LoggerHook)]
        every = math.gcd(*loggers) if loggers else 1
        self._every = math.gcd(every, self.interval) if self.interval else every
        # a checkpoint saved by iteration is flushed for in after_train_iter, where every process is, not only in
        # before_save_checkpoint, where the saving process alone is (a hook that agrees across processes needs that)
        self._savers = [hook for hook in runner.hooks if isinstance(hook, CheckpointHook) and not hook.by_epoch]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        kept = self.keep(runner, outputs) if outputs is not None else None
        if kept is not None:
            self._pending.append(kept)
        # LoggerHook logs on the epoch's inner iteration (by-epoch runs) or the global one; flush for both
        if (self.every_n_inner_iters(batch_idx, self._every) or self.every_n_train_iters(runner, self._every)
                or self.end_of_epoch(runner.train_dataloader, batch_idx) or self.is_last_train_iter(runner)
                or any(hook.every_n_train_iters(runner, hook.interval, hook.save_begin) for hook in self._savers)):
            self.flush(runner)

    def after_train_epoch(self, runner) -> None:
        self.flush(runner)
        super().after_train_epoch(runner)

    def before_val(self, runner) -> None:
        self.flush(runner)
        super().before_val(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.flush(runner)
        super().before_save_checkpoint(runner, checkpoint)

    def after_train(self, runner) -> None:
        self.flush(runner)
        super().after_train(runner)

"""Two fixes to mmengine 0.10's hooks, applied on import (idempotently), each changing only calls that fail.

1. **A default hook switched off with ``None``.** mmengine's ``Runner.register_default_hooks`` documents that a
   ``None`` in ``default_hooks`` removes that hook, but honours it only for its own six names; for any other name
   (mmpose's ``visualization`` and ``badcase``, the plugin's ``finite_loss``, ``checkpoint_fit``,
   ``metric_key_check``) it stops the Runner's construction with a bare ``AssertionError``. Such an entry is now
   dropped before mmengine sees it, so ``default_hooks = dict(finite_loss=None)`` in a child config, or
   ``--cfg-options default_hooks.finite_loss=None``, leaves that hook out as mmengine's docstring says.
2. **Validation alone with ``save_best``.** ``CheckpointHook`` prepares its output folder and file backend in
   ``before_train``; ``Runner.val()`` never calls that, so after the whole validation its ``after_val_epoch``
   fails with ``AttributeError: 'CheckpointHook' object has no attribute 'file_backend'`` and the metrics are
   lost (every config of the plugin sets ``save_best``). Outside training nothing was trained to keep, so the hook
   now saves no best checkpoint there, says so in the log, and ``val()`` returns its metrics. After
   ``Runner.train()`` on the same Runner, mmengine's code runs unchanged.
"""
import functools
import logging
from typing import Any, Callable, Dict, Optional

from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.runner import Runner

from .patching import install

# The names mmengine's register_default_hooks fills itself: there a None removes its default, so it is passed on.
MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler', 'checkpoint')


def without_switched_off(hooks: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """``hooks`` (a config's ``default_hooks``) without the ``None`` entries mmengine cannot take: those of names
    other than its own defaults, whose hooks exist only because a config added them."""
    if not hooks:
        return hooks
    return {name: hook for name, hook in hooks.items() if hook is not None or name in MMENGINE_DEFAULT_HOOKS}


def _wrap_register_default_hooks(original: Callable[..., None]) -> Callable[..., None]:

    @functools.wraps(original)
    def register_default_hooks(self: Runner, hooks: Optional[Dict[str, Any]] = None) -> None:
        original(self, without_switched_off(hooks))

    return register_default_hooks


def _wrap_after_val_epoch(original: Callable[..., None]) -> Callable[..., None]:

    @functools.wraps(original)
    def after_val_epoch(self: CheckpointHook, runner: Runner, metrics: Dict[str, float]) -> None:
        # file_backend is set by before_train only: without it this is validation outside training
        if self.save_best and not hasattr(self, 'file_backend'):
            keys = ', '.join(map(repr, self.key_indicators))
            print_log(f'CheckpointHook: validation outside training saves no best checkpoint (save_best {keys} '
                      'applies to validations during training)', logger='current', level=logging.INFO)
            return
        original(self, runner, metrics)

    return after_val_epoch


def patch_hooks() -> None:
    """Install both fixes into mmengine (idempotent)."""
    install(Runner, 'register_default_hooks', _wrap_register_default_hooks)
    install(CheckpointHook, 'after_val_epoch', _wrap_after_val_epoch)

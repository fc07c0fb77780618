"""Two fixes to mmengine 0.10's hooks, applied on import (idempotently), each changing only calls that fail.

1. **A default hook switched off with ``None``.** mmengine's ``register_default_hooks`` (of ``Runner`` and of
   ``FlexibleRunner``) documents that a ``None`` in ``default_hooks`` removes that hook, but honours it only for
   its own six names; for any other name (mmpose's ``visualization`` and ``badcase``, the plugin's
   ``finite_loss``, ``checkpoint_fit``, ``metric_key_check``, the fast configs' ``channels_last``, ...) it stops
   the Runner's construction with a bare ``AssertionError``. Such an entry is now dropped before mmengine sees it
   (and named in the log), so ``default_hooks = dict(finite_loss=None)`` in a child config, or
   ``--cfg-options default_hooks.finite_loss=None``, leaves that hook out as mmengine's docstring says.
2. **Validation alone with ``save_best``.** ``CheckpointHook`` prepares its output folder and file backend in
   ``before_train``; ``Runner.val()`` never calls that, so after the whole validation its ``after_val_epoch``
   fails with ``AttributeError: 'CheckpointHook' object has no attribute 'file_backend'``, and ``val()`` returns
   nothing (every config of the plugin sets ``save_best``). Outside training nothing was trained to keep, so the
   hook now saves no best checkpoint where it was not prepared for this runner's training, says so in the log,
   and ``val()`` returns its metrics. Where it was (validation during ``Runner.train()``, or ``val()`` after it
   on the same runner), mmengine's code runs unchanged; a hook object trained under another runner no longer
   replaces that run's best checkpoint with this one's model.
"""
import functools
import logging
import weakref
from typing import Any, Callable, Dict, Optional

from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.runner import FlexibleRunner, Runner

from .patching import install

# The names mmengine's register_default_hooks fills itself: there a None removes its default, so it is passed on.
MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler', 'checkpoint')

# On a CheckpointHook: a weak reference to the runner whose training its before_train prepared it for
_PREPARED_FOR = '_ipr_prepared_for'


def without_switched_off(hooks: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """``hooks`` (a config's ``default_hooks``) without the ``None`` entries mmengine cannot take: those of names
    other than its own defaults, whose hooks exist only because a config added them."""
    if not hooks:
        return hooks
    return {name: hook for name, hook in hooks.items() if hook is not None or name in MMENGINE_DEFAULT_HOOKS}


def prepared_for_training(hook: CheckpointHook, runner) -> bool:
    """Whether ``hook``'s ``before_train`` ran in ``runner``, which is what its best-checkpoint saving needs."""
    prepared = getattr(hook, _PREPARED_FOR, None)
    return prepared is not None and prepared() is runner


def _wrap_register_default_hooks(original: Callable[..., None]) -> Callable[..., None]:

    @functools.wraps(original)
    def register_default_hooks(self, hooks: Optional[Dict[str, Any]] = None) -> None:
        kept = without_switched_off(hooks)
        if hooks and len(kept) < len(hooks):
            print_log(f"default hooks switched off (None): {', '.join(sorted(set(hooks) - set(kept)))}",
                      logger='current', level=logging.INFO)
        original(self, kept)

    return register_default_hooks


def _wrap_before_train(original: Callable[..., None]) -> Callable[..., None]:

    @functools.wraps(original)
    def before_train(self: CheckpointHook, runner) -> None:
        original(self, runner)
        setattr(self, _PREPARED_FOR, weakref.ref(runner))

    return before_train


def _wrap_after_val_epoch(original: Callable[..., None]) -> Callable[..., None]:

    @functools.wraps(original)
    def after_val_epoch(self: CheckpointHook, runner, metrics: Dict[str, float]) -> None:
        if self.save_best and not prepared_for_training(self, runner):
            keys = ', '.join(map(repr, self.key_indicators))
            print_log(f'CheckpointHook: validation outside training saves no best checkpoint (save_best {keys} '
                      'applies to validations during training)', logger='current', level=logging.INFO)
            return
        original(self, runner, metrics)

    return after_val_epoch


def patch_hooks() -> None:
    """Install both fixes into mmengine (idempotent)."""
    for runner_class in (Runner, FlexibleRunner):
        install(runner_class, 'register_default_hooks', _wrap_register_default_hooks)
    install(CheckpointHook, 'before_train', _wrap_before_train)
    install(CheckpointHook, 'after_val_epoch', _wrap_after_val_epoch)

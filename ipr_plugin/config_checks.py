"""Checks of what a config gives the registered classes: keyword arguments a class does not take, named with their
likely cause, and sizes in pixels.

A config that inherits one of mmpose's model configs and sets ``head=dict(type='IPRHead', ...)`` is merged into the
base's head: the base head's own keys (``out_channels``, a ``MultipleLossWrapper``'s ``losses``) reach our classes,
and Python's "got an unexpected keyword argument" says nothing of the merge. Our classes take them as ``**merged``
and raise this instead; for one of mmpose's classes that ours build (the head's loss) the keys are compared with its
signature first.

:func:`building_model` names the config whose model cannot be built: the registry's errors (a misspelt key or
type, a negative size reaching torch) end deep in mmengine and torch, naming neither the file nor the setting's
place in it.
"""
import inspect
from contextlib import contextmanager
from numbers import Real
from typing import Any, Dict, Iterator


def refuse_merged_keys(cls_name: str, merged: Dict[str, Any]) -> None:
    """Raise ``TypeError`` naming ``merged`` (keyword arguments ``cls_name`` does not take) and mmengine's
    ``_delete_=True``, which replaces an inherited dict instead of merging into it; nothing when it is empty.
    ``_delete_`` itself is taken: mmengine leaves it in a dict with nothing to replace (a config without a base, a
    loss inside a head that is replaced whole)."""
    merged = {key: value for key, value in merged.items() if key != '_delete_'}
    if merged:
        names = ', '.join(repr(name) for name in sorted(merged))
        raise TypeError(f'{cls_name} got arguments it does not take: {names}. Left from the config this one '
                        "inherits? mmengine merges a child's dict into the base's: replace the base's with "
                        f"dict(_delete_=True, type='{cls_name}', ...)")


def refuse_keys_not_taken(cls: type, cfg: Dict[str, Any]) -> None:
    """:func:`refuse_merged_keys` for a class not of this plugin, built from ``cfg``: its keys that
    ``cls.__init__`` does not take (``type`` and ``_scope_`` are the registry's). One of mmpose's losses in place
    of an inherited ``IntegralJointLoss`` keeps the base's ``coord_loss``, ``sigma``, ..., of which Python's
    "unexpected keyword argument" named one and not the merge. Nothing where ``cls`` takes ``**kwargs``."""
    parameters = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        refuse_merged_keys(cls.__name__, {key: value for key, value in cfg.items()
                                          if key not in ('type', '_scope_') and key not in parameters})


def is_whole_pair(size: Any) -> bool:
    """Whether ``size`` is two whole numbers > 0 (ints, or floats and numpy numbers of whole value): a ``(w, h)``
    in pixels or cells. A bare 192 failed on ``len()``; ``(192.7, 256)`` was cut to 192 without a word."""
    try:
        return len(size) == 2 and all(isinstance(s, Real) and not isinstance(s, bool) and float(s) == int(s) > 0
                                      for s in size)
    except (TypeError, ValueError, OverflowError):
        return False


@contextmanager
def building_model(cfg: Any) -> Iterator[None]:
    """For building ``cfg.model`` (an mmengine ``Config``) in the block: ``ValueError`` naming the config file when
    it has no ``model`` (a dataset or detector-free file given in a model config's place) and when the block
    fails with what a bad setting raises (an argument a class does not take, a type no registry knows, a size
    torch cannot make); the message keeps the error's own text, which names the setting."""
    name = getattr(cfg, 'filename', None) or 'the config'
    # (a model of overrides alone, such as a caller's test_cfg merged into a file without one, has no type)
    if not isinstance(cfg.get('model'), dict) or 'type' not in cfg.model:
        raise ValueError(f'config {name} has no model (is it a model config?)')
    try:
        yield
    # what a class given arguments it cannot take raises, and torch for a size below 0; not AttributeError or other
    # RuntimeErrors, which a bug in the code or a device (CUDA out of memory) raises and the traceback must show
    except (TypeError, KeyError, AssertionError, ValueError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and 'negative dimension' not in str(error):
            raise
        raise ValueError(f'config {name}: its model cannot be built: {error_text(error)}') from error


def error_text(error: BaseException) -> str:
    """``error`` as ``Type: message``, for one that is passed on inside another's message (a KeyError's own str()
    is its repr, quotes and all)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return f'{type(error).__name__}: {text}'

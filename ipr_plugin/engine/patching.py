"""Replacing a function of the OpenMMLab stack by a wrapper of it, once."""
from typing import Any, Callable

# Marks the wrappers installed here: importing the plugin twice (or reloading it) never wraps a wrapper.
WRAPPER_MARK = '_ipr_wrapper'


def install(owner: Any, name: str, wrap: Callable[[Callable], Callable]) -> None:
    """Set ``owner.<name>`` (a module's function or a class's method) to ``wrap(owner.<name>)``, unless it is
    already a wrapper installed here."""
    original = getattr(owner, name)
    if not getattr(original, WRAPPER_MARK, False):
        wrapper = wrap(original)
        setattr(wrapper, WRAPPER_MARK, True)
        setattr(owner, name, wrapper)

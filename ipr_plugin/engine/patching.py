"""Replacing a function of the OpenMMLab stack by a wrapper of it, once per fix."""
import inspect
from typing import Any, Callable

# The fixes wrapped around a function, on its outermost wrapper (functools.wraps copies the inner ones' attributes
# outwards): importing the plugin twice, or reloading it, never applies a fix twice, and one fix does not hide
# another fix of the same function.
FIXES_ATTR = '_ipr_fixes'


def install(owner: Any, name: str, wrap: Callable[[Callable], Callable]) -> None:
    """Set ``owner.<name>`` (a module's function or a class's method, static ones staying static) to
    ``wrap(owner.<name>)``, unless ``wrap`` was already installed there."""
    original = getattr(owner, name)
    fixes = getattr(original, FIXES_ATTR, frozenset())
    fix = f'{wrap.__module__}.{wrap.__qualname__}'
    if fix not in fixes:
        wrapper = wrap(original)
        setattr(wrapper, FIXES_ATTR, fixes | {fix})
        static = isinstance(inspect.getattr_static(owner, name), staticmethod)
        setattr(owner, name, staticmethod(wrapper) if static else wrapper)

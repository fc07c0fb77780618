"""Keyword arguments a registered class does not take, named with their likely cause.

A config that inherits one of mmpose's model configs and sets ``head=dict(type='IPRHead', ...)`` is merged into the
base's head: the base head's own keys (``out_channels``, a ``MultipleLossWrapper``'s ``losses``) reach our classes,
and Python's "got an unexpected keyword argument" says nothing of the merge. Our classes take them as ``**merged``
and raise this instead.
"""
from typing import Any, Dict


def refuse_merged_keys(cls_name: str, merged: Dict[str, Any]) -> None:
    """Raise ``TypeError`` naming ``merged`` (keyword arguments ``cls_name`` does not take) and mmengine's
    ``_delete_=True``, which replaces an inherited dict instead of merging into it; nothing when it is empty."""
    if merged:
        names = ', '.join(repr(name) for name in sorted(merged))
        raise TypeError(f'{cls_name} got arguments it does not take: {names}. Left from the config this one '
                        "inherits? mmengine merges a child's dict into the base's: replace the base's with "
                        f"dict(_delete_=True, type='{cls_name}', ...)")

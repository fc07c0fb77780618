"""Load mmengine / mmpose checkpoints with ``torch.load(weights_only=True)`` under torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: its unpickler only creates objects from an
allow-list. mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so ``load_checkpoint``, Runner resume
and ``mim test --checkpoint`` fail on every checkpoint a Runner saved (``Weights only load failed``).
Switching ``weights_only`` off would let a checkpoint run arbitrary code. Instead, :func:`register_safe_globals`
adds exactly what those checkpoints' pickles name to the allow-list. Checked by disassembling a Runner checkpoint
(numpy 1.26.4, torch 2.14.1; each entry but ``_codecs.encode`` is needed) and by loading it with the list below
and nothing else, also under numpy 2.5 / torch 2.11:

- ``mmengine.logging.history_buffer.HistoryBuffer`` (``message_hub`` of a Runner checkpoint). The unpickler
  creates it with ``object.__new__`` and hands its state to ``HistoryBuffer.__setstate__``, which only stores
  data (its statistics table can only receive objects the unpickler could build, i.e. allow-listed ones); its
  ``__init__`` is never called.
- ``builtins.getattr``, **restricted** (:func:`_restricted_getattr`). A HistoryBuffer pickles its
  statistics methods as ``getattr(HistoryBuffer, 'mean')`` and so on. The real ``getattr`` must not be allowed:
  ``getattr(getattr, '__self__')`` is the ``builtins`` module, from which a pickle can reach ``__import__``;
  through ``getattr(fn, '__globals__')`` it can rebind the globals of an allowed function such as
  ``torch._utils._rebuild_tensor_v2`` and so call ``os.spawnlp`` (verified: it runs a command under
  ``weights_only=True``). The stand-in answers only ``getattr(HistoryBuffer, name)`` for the statistics
  methods HistoryBuffer itself registers, and the annealing functions below, and refuses everything else.
- ``OneCycleParamScheduler`` (``param_schedulers`` of a run with mmengine's ``OneCycleLR``): its state holds its
  annealing function, pickled as ``getattr(OneCycleParamScheduler, '_annealing_cos')`` (or ``_linear``). The
  class is **not** allowed: its name stands for an inert marker (:data:`_ONE_CYCLE`) that the restricted
  ``getattr`` turns into those two static functions only, so that a pickle cannot construct a scheduler.
- ``numpy.core.multiarray._reconstruct`` and ``numpy.ndarray``: numpy arrays (HistoryBuffer histories,
  mmpose's ``dataset_meta``: ``sigmas``, keypoint colours...). ``_reconstruct`` only allocates an empty array of
  an allowed subtype, and ``ndarray.__setstate__`` only copies raw bytes into it.
- ``numpy.dtype`` and the dtype classes of the dtypes that occur (:data:`CHECKPOINT_DTYPES`): building a dtype
  parses a type code, and setting its state sets byte order / field layout. The object dtype is left out, so an
  array cannot be rebuilt as an object array by its regular ``BUILD`` path.
- ``numpy.core.multiarray.scalar``: numpy scalars (the message hub's ``eta``, ``best_score``), made from a dtype
  and raw bytes.
- ``_codecs.encode``: how pickle protocol 2 stores the raw bytes of arrays and scalars (``encode(str,
  'latin1')``); codec lookup only imports modules of the standard ``encodings`` package. torch 2.14 already
  allows it by default; it is listed so that loading does not depend on that default.

None of these can call a function that is not itself on the allow-list, nor reach one through attributes. The
test suite checks that a pickle whose ``__reduce__`` calls ``os.system``, and the ``getattr`` chain above, are
still refused.
"""
import builtins
import codecs
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.utils import digit_version

# Dtypes of the numpy objects mmengine Runner checkpoints hold (float64 histories, int64 counts) and mmpose's
# ``dataset_meta`` (float32 sigmas and joint weights, uint8 colours).
CHECKPOINT_DTYPES: Tuple[str, ...] = ('float64', 'float32', 'int64', 'uint8')

# Where numpy 1.x and numpy 2 pickles name the array helpers: a checkpoint names the one of the numpy that saved
# it, whichever is installed where it is read.
_MULTIARRAY_NAMES = ('numpy.core.multiarray', 'numpy._core.multiarray')

# The statistics HistoryBuffer registers for itself (``HistoryBuffer._set_default_statistics``).
HISTORY_BUFFER_STATISTICS: Tuple[str, ...] = ('min', 'max', 'current', 'mean')

SafeGlobal = Union[Callable, Tuple[Callable, str]]


class _ClassMarker:
    """What a class's pickle name stands for where the class itself must not be callable from a pickle: only
    :func:`_restricted_getattr` of one of ``names`` resolves it, to the class's attribute."""

    def __init__(self, cls: type, names: Tuple[str, ...]) -> None:
        self.cls, self.names = cls, names

    def __repr__(self) -> str:
        return f'<{self.cls.__name__} (only {", ".join(self.names)})>'

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(f'ipr_plugin: {self.cls.__name__} may not be constructed by a weights-only '
                                     'checkpoint')


# mmengine's OneCycleParamScheduler keeps ``anneal_func``, one of its static methods, in its state dict.
_ONE_CYCLE = _ClassMarker(OneCycleParamScheduler, ('_annealing_cos', '_annealing_linear'))


def _restricted_getattr(obj: Any, name: str) -> Any:
    """``getattr`` limited to the statistics methods a HistoryBuffer pickles by reference and the attributes a
    :class:`_ClassMarker` names.

    Registered under the pickle name ``builtins.getattr``; see the module docstring for why the real ``getattr``
    is not safe to allow.
    """
    # A statistic registered with ``HistoryBuffer.register_statistics`` is pickled by its own module path, not
    # through getattr, and needs allow-listing of its own.
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    if isinstance(obj, _ClassMarker) and name in obj.names:
        return getattr(obj.cls, name)
    raise pickle.UnpicklingError(
        f'ipr_plugin: getattr({obj!r}, {name!r}) is not allowed in a weights-only checkpoint '
        '(only HistoryBuffer statistics methods and OneCycleParamScheduler annealing functions are)')


def _multiarray_globals() -> List[SafeGlobal]:
    """numpy's array/scalar rebuild functions under their own name and the names numpy 1.x and 2 pickles use."""
    try:  # numpy >= 2 (1.26 also has it, as an alias of numpy.core)
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray
    entries: List[SafeGlobal] = []
    for func in (multiarray._reconstruct, multiarray.scalar):
        entries.append(func)
        entries += [(func, f'{module}.{func.__name__}') for module in _MULTIARRAY_NAMES
                    if module != func.__module__]
    return entries


def safe_globals() -> List[SafeGlobal]:
    """The allow-list entries for mmengine/mmpose checkpoints, in ``add_safe_globals`` form."""
    dtype_classes = [type(np.dtype(name)) for name in CHECKPOINT_DTYPES]
    return [
        HistoryBuffer,
        (_restricted_getattr, f'{builtins.__name__}.getattr'),
        (_ONE_CYCLE, f'{OneCycleParamScheduler.__module__}.{OneCycleParamScheduler.__qualname__}'),
        *_multiarray_globals(),
        np.ndarray,
        np.dtype,
        *dtype_classes,
        codecs.encode,
    ]


def register_safe_globals() -> None:
    """Allow the globals of mmengine/mmpose checkpoints for ``torch.load(weights_only=True)``.

    Idempotent: torch keeps the allow-list as a set, and every entry here is the same object (or equal tuple)
    on each call. A no-op before torch 2.6, whose ``torch.load`` unpickles everything unless asked for
    ``weights_only``: torch < 2.4 has no allow-list, and 2.4 and 2.5 take no ``(function, name)`` entries.
    """
    if digit_version(torch.__version__)[:2] < (2, 6):  # 2.6 pre-releases already default to weights_only
        return
    torch.serialization.add_safe_globals(safe_globals())

"""Synthetic sets that several runs share: reused when a stamp says they were written with the same parameters,
and locked while a run writes or uses one, so that no run trains on images another rewrites under it.

The benchmark, the accuracy study and the demo take their sets through :func:`stamped_set`;
``make_synthetic_coco --out`` writes through :func:`writing_set`.
"""
import contextlib
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..arguments import write_json
from ..locks import flocked, share
from . import synthetic_coco

# lock files of stamped_set and writing_set, in the set's folder
_WRITE_LOCK, _USE_LOCK = '.write.lock', '.use.lock'


def stamped_data(stamp: str, params: Dict) -> Optional[Dict]:
    """What :func:`write_stamped` recorded in ``stamp`` for a set written with ``params``, or None: no stamp,
    another set's, one of the files it names (annotations, detections) gone or written since (by
    ``make_synthetic_coco --out``, or another tool's set in the same folder), a write cut short since, or the
    stamp of another folder (copied with it, it names the other folder's files)."""
    root = osp.dirname(osp.realpath(stamp))  # as write_synthetic_coco records it
    if osp.exists(osp.join(root, synthetic_coco.WRITING_MARKER)):
        return None
    try:
        with open(stamp) as f:
            saved = json.load(f)
    except (OSError, ValueError):  # none, or cut short by a version that wrote it in place: write the set again
        return None
    data = saved.get('data') if isinstance(saved, dict) else None
    if not isinstance(data, dict) or data.get('root') != root or saved.get('params') != params \
            or saved.get('files') != _file_versions(data):
        return None
    return data


def write_stamped(stamp: str, params: Dict, write: Callable[[], Dict]) -> Dict:
    """``write()`` (which writes a set over the folder) with its ``params``, its result and the version of each
    file the result names (``*_file``: size and modification time) recorded in ``stamp``.

    The old stamp goes first: a write cut short (Ctrl-C, a time limit) leaves no stamp, so the next run cannot
    take a folder half rewritten with other parameters for the set it asks for.
    """
    if osp.exists(stamp):
        os.remove(stamp)
    data = write()
    write_json(stamp, dict(params=params, data=data, files=_file_versions(data)), indent=1)
    return data


def _file_versions(data: Dict) -> Dict[str, Optional[List[int]]]:
    """``[size, modification time in ns]`` of each ``*_file`` in ``data``, None for one that is not there."""
    versions: Dict[str, Optional[List[int]]] = {}
    for key, path in sorted(data.items()):
        if key.endswith('_file') and isinstance(path, str):
            try:
                info = os.stat(path)
                versions[path] = [info.st_size, info.st_mtime_ns]
            except OSError:
                versions[path] = None
    return versions


@contextlib.contextmanager
def stamped_set(root: str, stamp_name: str, announce: Callable[[], None] = lambda: None,
                **params: Any) -> Iterator[Tuple[Dict, bool]]:
    """The set :func:`~.synthetic_coco.write_synthetic_coco` writes under ``root`` with the keyword arguments
    ``params``, held while the block runs.

    Reused when the stamp ``root/stamp_name`` says it was written with ``params`` (:func:`stamped_data`), else
    ``announce()`` and write it (:func:`write_stamped`, with ``workers=None``: every core for a large set). Runs
    that share ``root`` check and write one at a time; while the block runs, runs with the same parameters share
    the set, and one that would rewrite it raises :class:`~ipr_plugin.locks.FolderInUse` naming the folder (it
    trained on the other's images before).

    Yields:
        tuple: ``(data, reused)``: :func:`~.synthetic_coco.write_synthetic_coco`'s result as recorded, and whether
        the set was already there.
    """
    stamp = osp.join(root, stamp_name)
    recorded = json.loads(json.dumps(params))  # as the stamp holds them: an image size tuple reads back a list
    with contextlib.ExitStack() as held:
        with flocked(osp.join(root, _WRITE_LOCK), exclusive=True, waiting=_waiting(root)):
            data = stamped_data(stamp, recorded)
            reused = data is not None
            use = held.enter_context(flocked(osp.join(root, _USE_LOCK), exclusive=not reused, busy=_in_use(root)))
            if not reused:
                announce()
                # looked up in its module when called, so that a test's stand-in for the writer is the one called
                data = write_stamped(stamp, recorded,
                                     lambda: synthetic_coco.write_synthetic_coco(root, **params, workers=None))
                share(use)
        yield data, reused


@contextlib.contextmanager
def writing_set(root: str) -> Iterator[None]:
    """``root`` for writing a set over it (no stamp): waits while another run writes one there, and raises
    :class:`~ipr_plugin.locks.FolderInUse` while a run uses the one there."""
    with flocked(osp.join(root, _WRITE_LOCK), exclusive=True, waiting=_waiting(root)), \
            flocked(osp.join(root, _USE_LOCK), exclusive=True, busy=_in_use(root)):
        yield


def _waiting(root: str) -> str:
    return f'waiting for another run that is writing a synthetic set to {root}'


def _in_use(root: str) -> str:
    return (f'{root} holds a synthetic set that another run is using now; writing another set there would change '
            'its images under it: give this run a data folder of its own')

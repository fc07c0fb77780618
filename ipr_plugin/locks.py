"""Advisory file locks that keep two runs of a tool off each other's files.

Two benchmark or accuracy-study runs started at once may name the same synthetic set (the defaults do) or the
same work folder. Unguarded, one rewrote the set under the other, which trained and scored on the other's data
without a word, or deleted the other's results. A lock here is ``flock`` on a file: the kernel releases it when
its process ends, however it ends (Ctrl-C, SIGKILL), so there is never a stale lock to clean up. A child forked
while a lock is held (a rendering or loader worker) closes its copy of the lock's file at once: an ``flock`` lasts
until every copy is closed, and a child left behind by a killed parent held the lock for good. Where ``fcntl``
does not exist (Windows) the locks do nothing and runs are not guarded.
"""
import contextlib
import errno
import os
import os.path as osp
import sys
from typing import Iterator, Optional, Set

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None

_HELD: Set[int] = set()  # descriptors of the lock files this process holds


def _close_held_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if fcntl is not None:
    os.register_at_fork(after_in_child=_close_held_in_child)


class FolderInUse(RuntimeError):
    """Another process holds a lock this one needs at once (or, as the subclass
    :class:`~ipr_plugin.datasets.synthetic_coco.NotASyntheticSet`, files of no run are in the folder's way)."""


def lock_available() -> bool:
    """Whether the locks guard anything here (``fcntl`` exists)."""
    return fcntl is not None


_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}  # flock's "not on this file system"
_WARNED: Set[str] = set()


def _warn_unguarded(path: str, error: OSError) -> None:
    folder = osp.dirname(osp.abspath(path))
    if folder not in _WARNED:
        _WARNED.add(folder)
        print(f'warning: {folder}: its file system takes no file locks ({error.strerror}), so two runs using this '
              'folder at once are not kept apart', file=sys.stderr, flush=True)


@contextlib.contextmanager
def flocked(path: str, exclusive: bool, busy: Optional[str] = None, waiting: Optional[str] = None) -> Iterator[int]:
    """Hold an ``flock`` on the file ``path`` (created, with its folder, if missing) for the block.

    Args:
        path: the lock file.
        exclusive: this process alone; otherwise shared with other shared holders.
        busy: when given, a lock held elsewhere raises :class:`FolderInUse` with this message instead of waiting.
        waiting: printed to stderr, once, when the lock has to be waited for.

    Yields:
        int: the lock file's descriptor, for :func:`share` (-1 where locks do nothing).
    """
    if fcntl is None:
        yield -1
        return
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    _HELD.add(fd)
    given = fd
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if busy is not None:
                raise FolderInUse(busy) from None
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(fd, mode)
        except OSError as error:
            if error.errno not in _NO_LOCKS:
                raise
            # a cluster file system mounted without locks (Lustre's noflock, some NFS and FUSE mounts): the tools
            # still run, unguarded, rather than fail
            _warn_unguarded(path, error)
            given = -1
        yield given
    finally:
        if fd in _HELD:  # not in a forked child, which closed it (and whose number may now name another file)
            _HELD.discard(fd)
            os.close(fd)  # releases the lock


def share(fd: int) -> None:
    """Turn the exclusive lock held on ``fd`` (from :func:`flocked`) into a shared one."""
    if fcntl is not None and fd >= 0:
        fcntl.flock(fd, fcntl.LOCK_SH)


@contextlib.contextmanager
def own_folder(folder: str, what: str, option: str = '--work-dir') -> Iterator[None]:
    """``folder`` for this process alone while the block runs: another process holding it raises
    :class:`FolderInUse` naming the folder, ``what`` holds it, and the ``option`` that gives a folder of its own."""
    busy = f'{folder} is in use by another {what} running now; give this one a folder of its own ({option})'
    with flocked(osp.join(folder, '.lock'), exclusive=True, busy=busy):
        yield

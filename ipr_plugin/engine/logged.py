"""Errors that stop a run, written to the run's log file as well as raised."""
from typing import TypeVar

from mmengine.logging import MMLogger

E = TypeVar('E', bound=BaseException)


def logged(error: E) -> E:
    """``error``, after writing it to mmengine's current logger at ERROR level: mmengine's Runner does not log
    the exception that ends a run, so without this the run's log file (what a user of a cluster job reads) ends
    at the last iteration line and says nothing of why the run stopped."""
    # stacklevel 2: the log line names the caller's file and function, where the error was found
    MMLogger.get_current_instance().error(f'{type(error).__name__}: {error}', stacklevel=2)
    return error

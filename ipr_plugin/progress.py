"""Progress bars of the tools that go through every image (data check, person boxes, background share)."""
import sys
from typing import Any

# Seconds between redraws where stderr is not a terminal: a log file or a CI job keeps each redraw (tqdm moves back
# with '\r' and writes the bar again), which at COCO scale is one line of megabytes.
NOT_A_TERMINAL_INTERVAL = 30.0


def progress_bar(*args: Any, **kwargs: Any):
    """``tqdm(*args, **kwargs)``, redrawn every :data:`NOT_A_TERMINAL_INTERVAL` seconds at most when stderr is not
    a terminal."""
    from tqdm import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault('mininterval', NOT_A_TERMINAL_INTERVAL)
        # tqdm's monitor thread redraws a bar idle for maxinterval (10 s) seconds, with a stale count
        kwargs.setdefault('maxinterval', NOT_A_TERMINAL_INTERVAL)
    return tqdm(*args, **kwargs)

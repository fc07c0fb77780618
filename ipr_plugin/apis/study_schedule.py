"""The order of a study's rows, and running several of them at once.

A row (training or re-evaluation) is one ``mim`` subprocess with its own data workers, so rows that do not need
each other can run side by side. That pays where one row leaves the machine idle: mmpose's IPR config kept an
H200 22 % busy at batch 64, its main process waiting for batches half of the time (``BENCHMARKS.md``). A row
that needs another (its start, or the model it re-evaluates) starts only once that one has ended.
"""
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Dict, List, Sequence

Say = Callable[[str], None]


def next_ready(pending: Sequence[str], running: Sequence[str], needs: Callable[[str], Sequence[str]]) -> List[str]:
    """The names of ``pending`` that need no name still pending or running, in ``pending``'s order.

    A need that is neither is done, or not part of this run: either way it is not waited for.
    """
    unfinished = {*pending, *running}
    return [n for n in pending if not any(need in unfinished for need in needs(n) if need != n)]


def run_rows(names: Sequence[str], needs: Callable[[str], Sequence[str]], run: Callable[[str], None],
             parallel: int = 1, on_abort: Callable[[], None] = lambda: None) -> None:
    """Call ``run(name)`` for every name of ``names``, at most ``parallel`` at a time, each after the names it
    ``needs`` have returned.

    ``names`` gives the priority: whenever a slot is free, the first ready name starts, so with ``parallel=1`` the
    rows run exactly in that order (which must list every row after the rows it needs). ``run`` records its own
    results and failures; an exception out of it, or out of this thread (``SystemExit`` on SIGTERM, Ctrl-C),
    calls ``on_abort`` (which must end the running rows, e.g. kill their subprocesses) before it propagates.
    """
    if parallel < 1:
        raise ValueError(f'parallel must be at least 1, got {parallel}')
    pending: List[str] = list(dict.fromkeys(names))
    running: Dict[Future, str] = {}
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix='study-row')
    try:
        while pending or running:
            for name in next_ready(pending, list(running.values()), needs)[:parallel - len(running)]:
                pending.remove(name)
                running[pool.submit(run, name)] = name
            if not running:  # nothing can start: a cycle among the needs
                raise ValueError(f'rows waiting on each other: {", ".join(pending)}')
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                future.result()  # a bug in run: stop the study, not only that row
    except BaseException:
        on_abort()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def locked(say: Say) -> Say:
    """``say`` made safe to call from several rows' threads at once (whole lines, never interleaved)."""
    lock = threading.Lock()

    def say_locked(line: str) -> None:
        with lock:
            say(line)
    return say_locked

"""Steady-state window timing inside mmengine's loops, GPU utilisation sampling, and host memory peaks."""
import gc
import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import torch
from mmengine.hooks import Hook

T = TypeVar('T')


def cuda_sync(enabled: bool) -> None:
    """Wait for queued GPU work, so that a timestamp covers it (no-op on the CPU)."""
    if enabled:
        torch.cuda.synchronize()


def batch_len(data_batch: dict) -> int:
    """Samples in a collated batch: ``data_samples`` is a list with ``pseudo_collate`` and ``ipr_collate``."""
    return len(data_batch['data_samples'])


class WindowTimerHook(Hook):
    """Times iterations ``warmup .. warmup + iters - 1`` of a train or val loop.

    Timestamps are taken in ``after_{mode}_iter`` (after the optimizer step / the val step and the evaluator's
    per-batch ``process``): the window opens when the ``warmup``-th iteration ends and closes when its last one
    ends. The GPU is synchronised only at those two points, so the iterations in between queue work as they do
    in a real run, and the elapsed time still covers all of it. The val loop's final metric computation comes
    after the window.

    It also sums, over the window, the main process's wait for each batch: mmengine's loops fetch the next
    batch between one iteration's ``after_*_iter`` and the next one's ``before_*_iter``, so that gap is the
    time the loader kept the main process idle. A small share with a low GPU utilisation means the main
    process itself (Python per batch, host syncs) is the limit; a large share means the loader is.

    Args:
        mode: 'train' or 'val'.
        warmup: iterations before the window (>= 1, so worker start-up and first-call costs stay out of it).
        iters: iterations in the window; in 'val' mode capped by the loader's length.
        cuda: synchronise the GPU at the window's edges.
        on_start, on_stop: called right after the window opens / closes (e.g. a utilisation sampler).
    """

    priority = 'LOWEST'  # after every other hook's after_iter, which is part of the iteration's cost

    def __init__(self, mode: str, warmup: int, iters: int, cuda: bool,
                 on_start: Optional[Callable[[], None]] = None,
                 on_stop: Optional[Callable[[], None]] = None) -> None:
        if warmup < 1 or iters < 1:
            raise ValueError(f'warmup and iters must be >= 1, got {warmup} and {iters}')
        self.mode, self.warmup, self.iters, self.cuda = mode, warmup, iters, cuda
        self.on_start, self.on_stop = on_start, on_stop
        self._end = warmup + iters
        self._count = 0
        self.samples = 0
        self.t_start: Optional[float] = None
        self.t_stop: Optional[float] = None
        self._last_after: Optional[float] = None
        self.data_wait_s = 0.0

    def before_val_epoch(self, runner) -> None:
        if self.mode == 'val':
            length = len(runner.val_loop.dataloader)
            if length <= self.warmup:
                raise RuntimeError(f'the val loader has {length} batches, not more than warm-up {self.warmup}: '
                                   'write more val images')
            self._end = min(self._end, length)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.mode == 'train':
            self._fetched()

    def before_val_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.mode == 'val':
            self._fetched()

    def _fetched(self) -> None:
        # Called as iteration ``self._count`` starts: its batch has just arrived.
        if self.warmup <= self._count < self._end and self._last_after is not None:
            self.data_wait_s += time.perf_counter() - self._last_after

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.mode == 'train':
            self._tick(data_batch)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.mode == 'val':
            self._tick(data_batch)

    def _tick(self, data_batch: dict) -> None:
        index = self._count
        self._count += 1
        if self.warmup <= index < self._end:
            self.samples += batch_len(data_batch)
        if index == self.warmup - 1:
            cuda_sync(self.cuda)
            self.t_start = time.perf_counter()
            if self.on_start:
                self.on_start()
        elif index == self._end - 1:
            cuda_sync(self.cuda)
            self.t_stop = time.perf_counter()
            if self.on_stop:
                self.on_stop()
        self._last_after = time.perf_counter()

    def result(self) -> Dict[str, Any]:
        """``per_s`` (samples/s), ``samples``, ``iters``, ``elapsed_s`` of the window, and ``data_wait_s`` /
        ``data_wait_pct``: the main process's wait for batches in it (seconds / percent of ``elapsed_s``)."""
        if self.t_start is None or self.t_stop is None:
            raise RuntimeError(f'the {self.mode} window did not complete ({self._count} iterations ran)')
        elapsed = self.t_stop - self.t_start
        return dict(per_s=self.samples / elapsed, samples=self.samples, iters=self._end - self.warmup,
                    elapsed_s=elapsed, data_wait_s=self.data_wait_s, data_wait_pct=100 * self.data_wait_s / elapsed)


def _torch_reader() -> Callable[[], float]:
    return lambda: float(torch.cuda.utilization())


def _nvidia_smi_reader() -> Callable[[], float]:
    exe = shutil.which('nvidia-smi')
    if exe is None:
        raise FileNotFoundError('nvidia-smi not found')
    # nvidia-smi numbers GPUs physically; CUDA_VISIBLE_DEVICES maps torch's index onto that (index or UUID).
    visible = [d for d in os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',') if d.strip()]
    index = torch.cuda.current_device()
    device = visible[index].strip() if index < len(visible) else str(index)
    cmd = [exe, '--query-gpu=utilization.gpu', '--format=csv,noheader,nounits', f'--id={device}']
    return lambda: float(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=5).stdout)


class GpuUtilSampler:
    """Samples GPU utilisation (%) in a background thread between :meth:`start` and :meth:`stop`.

    Source: ``torch.cuda.utilization()`` (needs pynvml) if it works, else ``nvidia-smi``; neither -> ``None``.
    The driver's figure is the fraction of time in the last sample period (1/6 s to 1 s) during which a
    kernel ran, so the mean over the window says how often the GPU sat idle waiting for data or the host.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.source: Optional[str] = None
        self._read: Optional[Callable[[], float]] = None
        self.errors: List[str] = []
        for source, make in (('torch.cuda.utilization', _torch_reader), ('nvidia-smi', _nvidia_smi_reader)):
            try:
                read = make()
                read()
            except Exception as err:  # any failure means: try the next source
                self.errors.append(f'{source}: {type(err).__name__}: {err}'.strip())
                continue
            self.source, self._read = source, read
            break
        self._samples: List[float] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._read is None:
            return
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._samples.append(self._read())
            except Exception as err:  # a failed sample is dropped, not fatal to the benchmark
                self.errors.append(f'{self.source}: {err}')
            self._stop.wait(self.interval_s)

    def result(self) -> Dict[str, object]:
        """``mean`` utilisation % (``None`` when not measurable), ``samples``, ``source``."""
        mean = sum(self._samples) / len(self._samples) if self._samples else None
        return dict(mean=mean, samples=len(self._samples), source=self.source, errors=self.errors[:3])


def host_rss_mib() -> Optional[float]:
    """This process's resident memory now, MiB, after a garbage collection (None where /proc is not there)."""
    gc.collect()
    return _status_mib('VmRSS')


def with_host_peak(fn: Callable[[], T]) -> Tuple[T, Optional[float]]:
    """``fn()``, and the most resident memory this process held while it ran above what it held at the start,
    MiB: Linux's high-water mark, reset first (``/proc/self/clear_refs``), so no sampling can miss a short peak.
    None where it cannot be reset or read."""
    start = host_rss_mib()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        start = None
    value = fn()
    peak = _status_mib('VmHWM') if start is not None else None
    return value, None if peak is None else peak - start


def _status_mib(field: str) -> Optional[float]:
    try:
        with open('/proc/self/status') as f:
            found = re.search(rf'^{field}:\s+(\d+) kB', f.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None

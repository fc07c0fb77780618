"""The hook inside each of the accuracy study's trainings that writes what the study reads back."""
import time
from pathlib import Path
from typing import Any, Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmpose.registry import HOOKS

from ..arguments import write_json


def _synchronize() -> None:
    import torch
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@HOOKS.register_module()
class StudyRecordHook(Hook):
    """Write the training time (validation excluded) and every evaluation's metrics to ``out_file`` (JSON).

    The file is rewritten after each evaluation, so a run that dies later still leaves its curve behind.
    """

    priority = 'LOWEST'

    def __init__(self, out_file: str) -> None:
        self.out_file = Path(out_file)
        self.record: Dict[str, Any] = dict(curve=[], train_time_s=None)
        self._start = self._val_start = None
        self._val_seconds = 0.0

    def _write(self) -> None:
        if is_main_process():  # one writer under several processes; and whole, for a reader at any moment
            self.out_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(str(self.out_file), self.record, indent=1)

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()

    def before_val_epoch(self, runner) -> None:
        _synchronize()  # the training steps queued before this one belong to training time
        self._val_start = time.perf_counter()

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if self._val_start is not None:
            self._val_seconds += time.perf_counter() - self._val_start
        self.record['curve'].append(dict(iter=runner.iter, **{k: float(v) for k, v in (metrics or {}).items()}))
        self._write()

    def after_train(self, runner) -> None:
        _synchronize()
        self.record['train_time_s'] = round(time.perf_counter() - self._start - self._val_seconds, 2)
        self.record['iters'] = runner.iter
        self._write()

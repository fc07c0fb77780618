"""Helpers for tests that run the real ``mim train`` / ``mim test`` (mmpose's tools) as subprocesses, or the
sample config through mmengine's Runner."""
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import List, Optional

from ipr_plugin.apis.mim_runner import MimError, parse_coco_metrics, run_mim  # noqa: F401
from ipr_plugin.paths import REPO_ROOT

SAMPLE_CONFIG = REPO_ROOT / 'configs' / 'sample' / 'mmpose-ipr_res18_coco-sample-64x64.py'
OURS_SAMPLE_CONFIG = REPO_ROOT / 'configs' / 'sample' / 'ipr_res18_coco-sample-64x64.py'


def sample_runner_cfg(coco_sample: Path, work_dir: Path, train_cfg: dict, logger_interval: int,
                      val_samples: Optional[int] = None):
    """Our sample config on ``coco_sample`` at batch size 2, seed 0, for ``Runner.from_cfg``: validation (and
    testing) on the sample's detector boxes (the first ``val_samples`` of its 118, for a test that needs the
    metric's keys, not its value), the given ``train_cfg`` and logger interval."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(OURS_SAMPLE_CONFIG))
    root = f'{coco_sample}/'
    cfg.train_dataloader.dataset.data_root = root
    cfg.train_dataloader.batch_size = 2
    cfg.val_dataloader.dataset.update(data_root=root, bbox_file=f'{root}test_coco_det_AP_H_56.json')
    if val_samples is not None:
        cfg.val_dataloader.dataset.indices = val_samples
    cfg.val_evaluator.ann_file = f'{root}test_coco.json'
    cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    cfg.train_cfg = train_cfg
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=logger_interval)
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    # mmengine names a run's logger and message hub by config file and second: two runners built within one
    # second would share them, and the second would log into the first one's file
    cfg.experiment_name = f'{Path(work_dir).name}_{uuid.uuid4().hex[:8]}'
    cfg.visualizer.name = cfg.experiment_name  # likewise the visualizer: scalars went to the first run's folder
    return cfg


def coco_sample_cfg_options(coco_sample: Path) -> List[str]:
    """``--cfg-options`` pointing the sample config's data and metric at ``coco_sample`` (absolute paths)."""
    root = f'{coco_sample}/'
    ann = 'test_coco.json'
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.bbox_file={root}test_coco_det_AP_H_56.json',
        f'test_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.bbox_file={root}test_coco_det_AP_H_56.json',
        f'val_evaluator.ann_file={root}{ann}',
        f'test_evaluator.ann_file={root}{ann}',
    ]


def detector_box_dataset(coco_sample: Path, input_size, detector_boxes: bool = True):
    """The COCO sample's detector boxes (``IPRCocoDataset``, test mode) through a minimal test pipeline;
    ``detector_boxes=False``: its ground-truth boxes instead."""
    from mmpose.registry import DATASETS
    pipeline = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                dict(type='TopdownAffine', input_size=input_size), dict(type='PackPoseInputs')]
    return DATASETS.build(dict(type='IPRCocoDataset', data_root=str(coco_sample), ann_file='test_coco.json',
                               bbox_file=str(coco_sample / 'test_coco_det_AP_H_56.json') if detector_boxes else None,
                               data_prefix=dict(img=''), data_mode='topdown', test_mode=True, pipeline=pipeline))


def writable_copy(source: Path, dest: Path) -> Path:
    """A copy of the folder ``source`` (the shared COCO sample, read-only where it lies) that a test may change:
    contents only, every file and folder writable by its owner. A plain copy kept the read-only modes, which root
    ignores, so tests that passed as root failed for anyone else."""
    shutil.copytree(source, dest, copy_function=shutil.copyfile)
    for folder, _, files in os.walk(dest):
        for path in [folder, *(os.path.join(folder, name) for name in files)]:
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
    return Path(dest)


def processes_mentioning(text: str) -> List[int]:
    """The pids of every process whose command line contains ``text`` (read from /proc; Linux only)."""
    found = []
    for entry in Path('/proc').iterdir():
        try:
            cmdline = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError:  # not a process, or it ended meanwhile
            continue
        if entry.name.isdigit() and text in cmdline:
            found.append(int(entry.name))
    return found


def runner_log(runner) -> str:
    """The text of the runner's log file (mmengine names loggers by the second they start: a runner of an earlier
    test in the same second shares its logger, and so its file)."""
    return Path(next(h.baseFilename for h in runner.logger.handlers if hasattr(h, 'baseFilename'))).read_text()

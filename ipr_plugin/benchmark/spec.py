"""What one benchmark worker is asked to measure, and the configs it can be asked about."""
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..paths import MMPOSE_IPR_CONFIG as ANCHOR_CONFIG
from ..paths import OURS_CONFIG, OURS_FAST_CONFIG, installed_config, plugin_config

MEASUREMENTS: Tuple[str, ...] = ('train', 'loader', 'eval', 'pipeline', 'test_pipeline', 'host', 'metric')

# Short column names of the known configs, keyed by file name; anything else is shown by its file stem.
KNOWN_NAMES: Dict[str, str] = {
    osp.basename(OURS_CONFIG): 'ours',
    osp.basename(OURS_FAST_CONFIG): 'ours-fast',
}
ANCHOR_NAME = 'mmpose IPR'


@dataclass
class WorkerSpec:
    """Everything a worker needs; written as JSON by the command, read by the worker.

    Attributes:
        name: column name of the config in the tables.
        config: config file path (``package::`` paths already resolved).
        data: the synthetic set's paths, as returned by ``write_synthetic_coco`` (absolute).
        batch_size, workers: train and val dataloaders' batch size and ``num_workers``, equal for all configs.
        warmup, iters: iterations run before the timed window, and in it.
        device: 'cuda' or 'cpu'.
        skip: measurements (of :data:`MEASUREMENTS`) not to run.
        pipeline_samples: samples timed through the train pipeline in (d) and through the test pipeline in (e).
        metric_images: images of the predictions the final COCO evaluation (g) is timed on (COCO val2017: 5000).
        cfg_options: ``--cfg-options``-style overrides applied to every config before the benchmark's own.
        work_dir: the Runner's work dir (a temp dir).
        result_file: where the worker writes its JSON result.
        seed: Runner randomness seed and the pipeline measurement's seed.
        deadline: ``time.time()`` after which no measurement starts (``--time-limit``); ``None``: no limit.
    """
    name: str
    config: str
    data: Dict[str, Any]
    batch_size: int
    workers: int
    warmup: int
    iters: int
    device: str
    work_dir: str
    result_file: str
    skip: List[str] = field(default_factory=list)
    pipeline_samples: int = 256
    metric_images: int = 5000
    cfg_options: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    deadline: Optional[float] = None

    def dump(self, path: str) -> None:
        """Write the spec as JSON to ``path``."""
        with open(path, 'w') as f:
            json.dump(asdict(self), f, indent=1)

    @classmethod
    def load(cls, path: str) -> 'WorkerSpec':
        """Read a spec written by :meth:`dump`."""
        with open(path) as f:
            return cls(**json.load(f))


def resolve_config_path(path: str) -> str:
    """A config file path: ``package::rel`` -> the package's installed ``.mim/configs/rel``; ``configs/rel`` that
    does not exist from the working directory is the plugin's own (:func:`plugin_config`)."""
    if '::' in path:
        return installed_config(path)
    parts = Path(path).parts
    if not osp.exists(path) and len(parts) > 1 and parts[0] == 'configs' and plugin_config(*parts[1:]).exists():
        return str(plugin_config(*parts[1:]))
    return path


def config_name(path: str) -> str:
    """Column name of a config given as on the command line."""
    if path == ANCHOR_CONFIG or resolve_config_path(path) == resolve_config_path(ANCHOR_CONFIG):
        return ANCHOR_NAME
    base = osp.basename(path)
    return KNOWN_NAMES.get(base, osp.splitext(base)[0])


def parse_config_arg(arg: str) -> Tuple[str, str, str]:
    """``NAME=PATH`` or ``PATH`` -> (name, path as given, resolved path). A NAME holds no ``/`` or ``::``: an
    ``=`` after one is part of the path (``runs/lr=1e-3/config.py``)."""
    name: Optional[str] = None
    head = arg.split('=', 1)[0]
    if '=' in arg and not any(mark in head for mark in ('::', '/', os.sep)) and not osp.exists(arg):
        name, arg = arg.split('=', 1)
    return name or config_name(arg), arg, resolve_config_path(arg)


def default_configs() -> List[str]:
    """mmpose's IPR config, ours, and ours-fast when its file exists."""
    configs = [ANCHOR_CONFIG, OURS_CONFIG]
    if osp.exists(resolve_config_path(OURS_FAST_CONFIG)):
        configs.append(OURS_FAST_CONFIG)
    return configs

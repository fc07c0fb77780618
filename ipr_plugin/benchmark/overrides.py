"""A config as the benchmark runs it: the synthetic data, equal batch size and workers, short iteration-based
training, no checkpoints, no downloads. Everything else (optim wrapper, hooks, data preprocessor, collate_fn,
pin_memory, val fp16, ...) is the config's own, since that is what is being compared."""
import copy
from typing import Any, Dict, List, Tuple

from mmengine.config import Config, ConfigDict

from ..config_edits import drop_pretrained_weights, size_loader
from .spec import WorkerSpec

# Large enough never to be reached in a benchmark run.
NEVER = 10**9


def load_bench_config(spec: WorkerSpec) -> Config:
    """Load ``spec.config`` and apply the benchmark's overrides (see the module docstring)."""
    cfg = Config.fromfile(spec.config)
    if spec.cfg_options:
        cfg.merge_from_dict(spec.cfg_options)
    drop_pretrained_weights(cfg.model)
    cfg.model.test_cfg = ConfigDict(cfg.model.get('test_cfg') or {}, flip_test=True)
    _point_at_data(cfg, spec)
    cfg.val_evaluator.ann_file = spec.data['val_ann_file']
    # The val loop runs exactly warm-up + window batches.
    leaf_dataset(cfg.val_dataloader.dataset).indices = (spec.warmup + spec.iters) * spec.batch_size
    # Iteration-based, so the run stops after the window; validation never triggers inside training.
    cfg.train_cfg = ConfigDict(type='IterBasedTrainLoop', max_iters=spec.warmup + spec.iters,
                               val_begin=NEVER, val_interval=NEVER)
    # Its epoch-based milestones mean nothing in a few hundred iterations; the per-iteration cost is negligible.
    cfg.param_scheduler = None
    hooks = ConfigDict(cfg.get('default_hooks') or {})
    hooks.checkpoint = ConfigDict(type='CheckpointHook', interval=-1, save_last=False)
    hooks.logger = ConfigDict(type='LoggerHook', interval=NEVER)
    if hooks.get('visualization') is not None:
        hooks.visualization.enable = False
    cfg.default_hooks = hooks
    cfg.log_processor = ConfigDict(cfg.get('log_processor') or {}, by_epoch=False)
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.work_dir = spec.work_dir
    cfg.launcher = 'none'
    cfg.load_from = None
    cfg.resume = False
    cfg.randomness = ConfigDict(seed=spec.seed)
    cfg.log_level = 'WARNING'
    return cfg


def cpu_adjustments(cfg: Config, device: str) -> List[str]:
    """Make a GPU-only config runnable on the CPU; return notes on what was changed (for the table)."""
    notes: List[str] = []
    optim = cfg.get('optim_wrapper') or {}
    if device == 'cpu' and optim.get('type') == 'AmpOptimWrapper':
        # mmengine's AmpOptimWrapper asserts a CUDA/NPU/MLU device.
        for key in ('type', 'dtype', 'loss_scale'):
            optim.pop(key, None)
        optim['type'] = 'OptimWrapper'
        notes.append('AmpOptimWrapper -> OptimWrapper (fp32) on CPU')
    return notes


def train_only(cfg: Config) -> Config:
    """A copy without validation, so the Runner builds no val loop."""
    cfg = copy.deepcopy(cfg)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    return cfg


def eval_only(cfg: Config) -> Config:
    """A copy without training, so the Runner builds no optimizer or train loader."""
    cfg = copy.deepcopy(cfg)
    cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = cfg.param_scheduler = None
    return cfg


def describe(cfg: Config) -> Dict[str, Any]:
    """The settings that make configs differ in speed, for the table's config list."""
    optim = cfg.get('optim_wrapper') or {}
    loader = cfg.train_dataloader
    collate = loader.get('collate_fn') or {}
    return dict(
        optim_wrapper=optim.get('type', 'OptimWrapper') + (f"({optim['dtype']})" if optim.get('dtype') else ''),
        data_preprocessor=cfg.model.get('data_preprocessor', {}).get('type'),
        codec=cfg.model.get('head', {}).get('decoder', {}).get('type'),
        backbone=f"{cfg.model.backbone.get('type')}-{cfg.model.backbone.get('depth', '')}".rstrip('-'),
        collate_fn=collate.get('type', 'pseudo_collate'),
        pin_memory=bool(loader.get('pin_memory', False)),
        val_fp16=bool((cfg.get('val_cfg') or {}).get('fp16', False)),
        hooks=added_hooks(cfg),
        # where the train JPEGs are decoded: the (d) table's LoadImage and TopdownAffine rows then split differently
        train_decode=('by region (IPRTopdownAffine)' if any(isinstance(step, dict) and step.get('decode_region')
                                                           for step in loader.dataset.get('pipeline') or [])
                      else 'whole (LoadImage)'),
    )


def added_hooks(cfg: Config) -> List[str]:
    """The names of the hooks ``cfg`` adds to mmengine's and mmpose's defaults: its default hooks of other
    packages (the plugin's), then its custom hooks. A hook may be a config (``type`` a registered name or a
    class) or a built one."""
    from mmpose.registry import HOOKS

    def name_and_module(hook) -> Tuple[str, str]:
        kind = hook.get('type') if isinstance(hook, dict) else type(hook)
        cls = HOOKS.get(kind) if isinstance(kind, str) else kind
        return (kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))), getattr(cls, '__module__', '')

    defaults = [name_and_module(hook) for hook in (cfg.get('default_hooks') or {}).values() if hook is not None]
    added = [name for name, module in defaults if not module.startswith(('mmengine.', 'mmpose.'))]
    return added + [name_and_module(hook)[0] for hook in cfg.get('custom_hooks') or []]


def leaf_dataset(dataset: ConfigDict) -> ConfigDict:
    # Through wrappers such as RepeatDataset to the dataset that reads files.
    while 'dataset' in dataset:
        dataset = dataset.dataset
    return dataset


def _point_at_data(cfg: Config, spec: WorkerSpec) -> None:
    data = spec.data
    for key, split in (('train_dataloader', 'train'), ('val_dataloader', 'val')):
        loader = cfg[key]
        size_loader(loader, spec.batch_size, spec.workers)
        dataset = leaf_dataset(loader.dataset)
        dataset.data_root = data['root']
        dataset.ann_file = data[f'{split}_ann_file']
        dataset.data_prefix = ConfigDict(img=data[f'{split}_img_dir'] + '/')
    leaf_dataset(cfg.val_dataloader.dataset).bbox_file = data['bbox_file']

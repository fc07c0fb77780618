"""The accuracy study's variants, and the one budget that every variant's config is rewritten to.

Each variant starts from a real config file (mmpose's installed integral-regression configs, or this plugin's
``configs/``) and only data paths, budget and logging are replaced, identically for every variant (see
:func:`build_variant_config`). :class:`~.study_record_hook.StudyRecordHook` runs inside each training and writes
what the study reads back (train time without validation, every evaluation's metrics) to a JSON file.
"""
import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config_edits import drop_pretrained_weights, size_loader
from ..paths import OURS_FAST_CONFIG, installed_config, plugin_config
from .study_record_hook import StudyRecordHook  # noqa: F401  (registered in each training, which imports this module)

MMPOSE_CONFIG_DIR = 'body_2d_keypoint'
MMPOSE_IPR_DIR = 'integral_regression/coco/'
FAST_CONFIG = plugin_config(Path(OURS_FAST_CONFIG).name)
RECORD_FILE = 'study_record.json'
PREDICTIONS_FILE = 'predictions.pkl'
# mmengine's own work dir inside a run's folder: the Runner writes its copy of the config there under the same
# file name, which must not overwrite the study's copy (``--reuse`` compares against it).
MMENGINE_DIR = 'mmengine'
# Codec types whose input (and heatmap) size follows the study's input size.
_CODEC_TYPES = ('IntegralRegressionLabel', 'DSNTLabel', 'MSRAHeatmap')


@dataclass(frozen=True)
class Variant:
    """One row of the study.

    Attributes:
        name: row name.
        source: ``'mmpose'`` (mmpose's installed configs) or ``'ours'`` (this repository's ``configs/``).
        config: config file in the source's folder (mmpose's: below ``configs/body_2d_keypoint``); empty for a
            re-evaluation.
        notes: what the row is, for the table.
        anneal_by_iter: the config anneals its regulariser by epoch; iteration-based training never advances
            the epoch, so the study anneals by iteration instead.
        eval_of: for a re-evaluation, the trained variant whose model is evaluated again (no training).
        test_cfg: ``model.test_cfg`` entries changed for the re-evaluation.
        evaluator: ``test_evaluator`` (CocoMetric) entries changed for the re-evaluation.
        head: ``model.head`` entries changed after the config is read (an ablation of one of its settings).
        init_from: a trained variant whose final weights this one starts from (``load_from``): fine-tuning,
            with the whole budget run again on top of that variant's.
        ablation: run only when named in ``--variants`` (not one of the default rows).
    """
    name: str
    source: str
    config: str
    notes: str
    anneal_by_iter: bool = False
    eval_of: Optional[str] = None
    test_cfg: Tuple[Tuple[str, Any], ...] = ()
    evaluator: Tuple[Tuple[str, Any], ...] = ()
    head: Tuple[Tuple[str, Any], ...] = ()
    init_from: Optional[str] = None
    ablation: bool = False

    @property
    def trained(self) -> bool:
        return self.eval_of is None

    @property
    def trains_ours(self) -> bool:
        """A model of ours is trained in this row: the rows the calibration (Spearman, plot) is computed for."""
        return self.source == 'ours' and self.trained

    @property
    def needs(self) -> Tuple[str, ...]:
        """The variants whose final model this one uses (re-evaluates or starts from)."""
        return tuple(n for n in (self.eval_of, self.init_from) if n is not None)


_ROWS: Tuple[Variant, ...] = (
    Variant('mmpose-IPR', 'mmpose', MMPOSE_IPR_DIR + 'ipr_res50_8xb64-210e_coco-256x256.py',
            'mmpose DSNTHead: SmoothL1 + heatmap MSE; constant scores'),
    Variant('mmpose-DSNT', 'mmpose', MMPOSE_IPR_DIR + 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py',
            'mmpose DSNTHead: SmoothL1 + JS; constant scores'),
    Variant('mmpose-Debias', 'mmpose', MMPOSE_IPR_DIR + 'ipr_res50_debias-8xb64-210e_coco-256x256.py',
            'mmpose DSNTHead: SmoothL1 + JS, beta 10, debias; constant scores'),
    Variant('ours-L1', 'ours', 'ipr_res50_8xb64-210e_coco-256x256.py', 'IPRHead: IntegralL1Loss'),
    Variant('ours-JS', 'ours', 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py',
            'IPRHead: IntegralJointLoss (L1 + JS, cosine-annealed by iteration)', anneal_by_iter=True),
    Variant('ours-Debias', 'ours', 'ipr_res50_debias-8xb64-210e_coco-256x256.py',
            'IPRHead: joint loss, beta 10, debias', anneal_by_iter=True),
    Variant('ours-L1-fast', 'ours', 'ipr_res50_fast-8xb64-210e_coco-256x256.py',
            'ours-L1 through the fast config: drop-in transforms, fp16 evaluation, host-sync-free logging'),
    Variant('ours-L1-ones', 'ours', '', 'the ours-L1 model re-evaluated with constant keypoint scores',
            eval_of='ours-L1', test_cfg=(('keypoint_scores', 'ones'), )),
    Variant('ours-JS-ones', 'ours', '', 'the ours-JS model re-evaluated with constant keypoint scores',
            eval_of='ours-JS', test_cfg=(('keypoint_scores', 'ones'), )),
    # mmpose's instance score averages the keypoint scores above keypoint_score_thr (0.2) only, and is 0 when none
    # is: our scores are probability masses, which a model with wide maps keeps low; these rows count them all
    *(Variant(f'{name}-thr0', 'ours', '', f'ablation: the {name} model re-evaluated with CocoMetric\'s '
              'keypoint_score_thr 0 instead of 0.2 (every keypoint score counts in the instance score)',
              eval_of=name, evaluator=(('keypoint_score_thr', 0.0), ), ablation=True)
      for name in ('ours-L1', 'ours-JS')),
    # ours-Debias differs from ours-JS in two settings at once; these two rows take them one at a time
    Variant('ours-JS-beta10', 'ours', 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py',
            'ablation: ours-JS at softmax beta 10, no debias (ours-Debias without its correction)',
            anneal_by_iter=True, head=(('beta', 10.0), ), ablation=True),
    Variant('ours-JS-debias', 'ours', 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py',
            'ablation: ours-JS with the debias correction at beta 1 (ours-Debias without its beta)',
            anneal_by_iter=True, head=(('debias', True), ), ablation=True),
    # the same two corrections with the background level measured (each map's median logit) instead of assumed 0
    Variant('ours-JS-debias-median', 'ours', 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py',
            'ablation: ours-JS-debias with the background at each map\'s median logit instead of 0',
            anneal_by_iter=True, head=(('debias', True), ('debias_background', 'median')), ablation=True),
    Variant('ours-Debias-median', 'ours', 'ipr_res50_debias-8xb64-210e_coco-256x256.py',
            'ablation: ours-Debias with the background at each map\'s median logit instead of 0',
            anneal_by_iter=True, head=(('debias_background', 'median'), ), ablation=True),
    # ... and with the correction's amplification of wide maps bounded at 2x instead of 10x
    Variant('ours-Debias-cap0.5', 'ours', 'ipr_res50_debias-8xb64-210e_coco-256x256.py',
            'ablation: ours-Debias with the background share capped at 0.5 (at most 2x) instead of 0.9 (10x)',
            anneal_by_iter=True, head=(('debias_max_background', 0.5), ), ablation=True),
    # ... and trained on the unclamped debiased coordinate, so that a capped keypoint beyond the range keeps a gradient
    Variant('ours-Debias-noclamp', 'ours', 'ipr_res50_debias-8xb64-210e_coco-256x256.py',
            'ablation: ours-Debias trained on the unclamped debiased coordinates (clamped ones have no gradient)',
            anneal_by_iter=True, head=(('debias_clamp_in_loss', False), ), ablation=True),
    Variant('ours-Debias-median-cap0.5', 'ours', 'ipr_res50_debias-8xb64-210e_coco-256x256.py',
            'ablation: ours-Debias-cap0.5 with the background at each map\'s median logit (its logged share then '
            'reflects the maps\' shape alone)',
            anneal_by_iter=True, head=(('debias_background', 'median'), ('debias_max_background', 0.5)),
            ablation=True),
    # The correction is exact on peaked maps, and mmpose's Debias recipe starts from a trained model, not from
    # scratch: these two rows continue the ours-JS-beta10 model for the budget again, with and without it.
    Variant('ours-JS-beta10-ft', 'ours', 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py',
            'ablation: the ours-JS-beta10 model trained for the budget again, unchanged (ours-Debias-ft\'s control)',
            anneal_by_iter=True, head=(('beta', 10.0), ), init_from='ours-JS-beta10', ablation=True),
    Variant('ours-Debias-ft', 'ours', 'ipr_res50_debias-8xb64-210e_coco-256x256.py',
            'ablation: the ours-JS-beta10 model trained for the budget again with the debias correction',
            anneal_by_iter=True, init_from='ours-JS-beta10', ablation=True),
    # mmpose's recipe for all three of its integral rows: start from a heatmap-trained SimpleBaseline. No weights
    # reach this machine, so the study trains the start (mmpose's own heatmap config) and fine-tunes from it.
    Variant('mmpose-SimpleBaseline', 'mmpose', 'topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py',
            'ablation: mmpose HeatmapHead (Gaussian heatmaps, MSE): the start of the -hm rows', ablation=True),
    # the -hm rows train for twice the budget in all; this control gives the heatmap model the same
    Variant('mmpose-SimpleBaseline-hm', 'mmpose', 'topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py',
            'ablation: the mmpose-SimpleBaseline model trained for the budget again, unchanged (the -hm rows\' '
            'control)', init_from='mmpose-SimpleBaseline', ablation=True),
)


def _from_heatmap_model(name: str) -> Variant:
    """``name`` fine-tuned from the mmpose-SimpleBaseline model (mmpose's recipe for its integral rows)."""
    row = next(v for v in _ROWS if v.name == name)
    return replace(row, name=f'{name}-hm', notes=f'ablation: {name} fine-tuned from the mmpose-SimpleBaseline model '
                   "(mmpose's recipe)", init_from='mmpose-SimpleBaseline', ablation=True)


VARIANTS: Tuple[Variant, ...] = _ROWS + tuple(
    _from_heatmap_model(name)
    for name in ('mmpose-IPR', 'mmpose-DSNT', 'mmpose-Debias', 'ours-L1', 'ours-JS', 'ours-Debias'))
VARIANT_NAMES: Tuple[str, ...] = tuple(v.name for v in VARIANTS)
# What the study runs unless --variants names others: the default rows, not the ablations.
DEFAULT_VARIANTS: Tuple[str, ...] = tuple(v.name for v in VARIANTS if not v.ablation)


def get_variant(name: str) -> Variant:
    """The variant called ``name``."""
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise KeyError(f'unknown variant {name!r}; known: {", ".join(VARIANT_NAMES)}')


@dataclass(frozen=True)
class Budget:
    """What every variant shares: model size, schedule, batch, data loading, precision and seed."""
    depth: int = 18
    base_channels: int = 64
    input_size: int = 256
    iters: int = 1500
    batch_size: int = 64
    val_batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    curve_points: int = 1
    workers: int = 14
    amp: bool = False
    cuda: bool = True
    seed: int = 0
    val_every: int = 0  # iterations between evaluations; 0: from iters and curve_points

    @property
    def val_interval(self) -> int:
        # IterBasedTrainLoop also validates after the last iteration, whatever the interval.
        if self.val_every > 0:
            return self.val_every
        return max(1, math.ceil(self.iters / max(1, self.curve_points)))

    @property
    def warmup_iters(self) -> int:
        # Short (tiny) runs keep half their iterations for the cosine part; mmengine's LinearLR needs two
        # iterations to ramp at all (over one it would hold the start factor through the whole cosine).
        iters = min(self.warmup, self.iters // 2)
        return iters if iters >= 2 else 0

    def fine_tuning(self, iters: int) -> 'Budget':
        """The budget of a row that starts from another row's weights and trains ``iters`` iterations: the same
        in all else, evaluated at the same spacing (so a longer fine-tuning draws a longer curve, not a sparser one)."""
        if iters == self.iters:
            return self
        every = self.val_interval  # kept as it is: the rows' curves share their iterations up to the shorter end
        return replace(self, iters=iters, val_every=every, curve_points=math.ceil(iters / every))


def source_config(variant: Variant) -> Path:
    """The file a trained variant's config is read from."""
    if variant.source == 'mmpose':
        return Path(installed_config(f'mmpose::{MMPOSE_CONFIG_DIR}/{variant.config}'))
    return plugin_config(variant.config)


def _resize_inputs(node: Any, size: int) -> None:
    """Set every model-input size in a config tree (affine transforms, codecs) to ``size`` x ``size``.

    The config files are already resolved, so their codec is copied into the head's decoder and the train
    pipeline's encoder: every copy has to change. Heatmap sizes keep their ratio to the input (1/4).
    """
    if isinstance(node, dict):
        kind = node.get('type')
        if kind in ('TopdownAffine', 'IPRTopdownAffine') or kind in _CODEC_TYPES:
            old = node['input_size']
            node['input_size'] = (size, size)
            if kind in _CODEC_TYPES and node.get('heatmap_size') is not None:
                node['heatmap_size'] = tuple(int(h * size / o) for h, o in zip(node['heatmap_size'], old))
        for value in node.values():
            _resize_inputs(value, size)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _resize_inputs(value, size)


# The fast config's hooks of the model's memory format and the test loader's collation (its IPRRuntimeInfoHook is
# left out: every variant logs as its own config does)
_FAST_HOOKS = ('channels_last', 'test_collate')


def _fast_path() -> Dict[str, Any]:
    """The data-path settings of our fast config, read from the file so the two cannot drift apart."""
    from mmengine.config import Config
    fast = Config.fromfile(str(FAST_CONFIG))
    loader = fast.train_dataloader
    return dict(data_preprocessor=fast.model.data_preprocessor.to_dict(),
                default_hooks={name: dict(fast.default_hooks[name]) for name in _FAST_HOOKS},
                loader=dict(pin_memory=loader.pin_memory, prefetch_factor=loader.prefetch_factor,
                            collate_fn=dict(loader.collate_fn)))


def build_variant_config(variant: Variant, budget: Budget, data: Dict[str, str], work_dir: Path,
                         save_checkpoint: bool = False, load_from: Optional[str] = None):
    """The variant's source config with data paths, budget and logging replaced.

    Args:
        variant: a trained variant.
        budget: the shared budget.
        data: ``write_synthetic_coco``'s result (``root``, ``val_ann_file``, ``bbox_file``).
        work_dir: the run's folder: the record and the last evaluation's predictions are written there, and
            mmengine's logs and checkpoints in its ``MMENGINE_DIR``.
        save_checkpoint: save the final weights (only a model that another variant uses needs them).
        load_from: checkpoint whose weights the model starts from (``variant.init_from``'s final model).

    Returns:
        mmengine.Config.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(str(source_config(variant)))
    # The plugin registers IPRHead, this module the record hook (a module name kept as it was, so that the config
    # text of runs made before still matches for --reuse); for mmpose's rows it changes nothing that runs.
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    cfg.custom_imports = dict(imports=list(dict.fromkeys([*imports, 'ipr_plugin', __name__])),
                              allow_failed_imports=False)

    # model: same backbone for all, trained from scratch (no network: drop the pretrained URL) unless it
    # continues another variant's model
    drop_pretrained_weights(cfg.model)
    cfg.load_from = load_from
    cfg.model.backbone.depth = budget.depth
    # ResNet's last stage has 8x its base channels, times the bottleneck expansion (4) from depth 50 on
    cfg.model.head.in_channels = budget.base_channels * (8 if budget.depth < 50 else 32)
    if budget.base_channels != 64:  # a narrower model (CPU-sized studies): the deconv stack narrows with it
        cfg.model.backbone.update(stem_channels=budget.base_channels, base_channels=budget.base_channels)
        cfg.model.head.deconv_out_channels = (4 * budget.base_channels, ) * 3
    if 'in_featuremap_size' in cfg.model.head:  # the integral heads' (mmpose's HeatmapHead has none)
        cfg.model.head.in_featuremap_size = (budget.input_size // 32, ) * 2
    _resize_inputs(cfg._cfg_dict, budget.input_size)
    if variant.anneal_by_iter:
        cfg.model.head.loss.anneal.by = 'iter'
    cfg.model.head.update(dict(variant.head))

    # schedule: iteration-based, same optimiser and learning-rate policy for all
    cfg.train_cfg = dict(by_epoch=False, max_iters=budget.iters, val_interval=budget.val_interval)
    optimizer = dict(type='Adam', lr=budget.lr)
    # bf16 has float32's range: no loss scaling, whose dynamic scaler syncs with the host at every step
    cfg.optim_wrapper = (dict(type='AmpOptimWrapper', dtype='bfloat16', optimizer=optimizer,
                              loss_scale=dict(enabled=False)) if budget.amp
                         else dict(type='OptimWrapper', optimizer=optimizer))
    schedulers = []
    if budget.warmup_iters:
        schedulers.append(dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
                               end=budget.warmup_iters))
    schedulers.append(dict(type='CosineAnnealingLR', by_epoch=False, begin=budget.warmup_iters,
                           end=budget.iters, T_max=budget.iters - budget.warmup_iters, eta_min=0.0))
    cfg.param_scheduler = schedulers
    cfg.randomness = dict(seed=budget.seed)
    cfg.env_cfg.cudnn_benchmark = budget.cuda

    # data: the study's split and detections; each config keeps its own dataset type and pipelines
    fast = _fast_path() if variant.source == 'ours' else None
    root = data['root'].rstrip('/') + '/'
    cfg.data_root = root  # only informative once resolved, but a dumped config should not name another root
    for split, batch_size in (('train', budget.batch_size), ('val', budget.val_batch_size)):
        loader = cfg[f'{split}_dataloader']
        size_loader(loader, batch_size, budget.workers)
        loader.persistent_workers = budget.workers > 0
        loader.dataset.data_root = root
        if fast is not None:
            loader.collate_fn = fast['loader']['collate_fn']
            loader.pin_memory = fast['loader']['pin_memory'] and budget.cuda
            if budget.workers:  # torch refuses a prefetch factor without worker processes
                loader.prefetch_factor = fast['loader']['prefetch_factor']
    cfg.val_dataloader.dataset.bbox_file = data['bbox_file']
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    metric = dict(type='CocoMetric', ann_file=data['val_ann_file'])
    # The last evaluation's predictions stay on disk for the calibration analysis.
    cfg.val_evaluator = [metric, dict(type='DumpResults', out_file_path=str(work_dir / PREDICTIONS_FILE))]
    cfg.test_evaluator = metric

    if fast is not None:
        cfg.model.data_preprocessor = fast['data_preprocessor']
        cfg.default_hooks.update(fast['default_hooks'])
    cfg.custom_hooks = [*(dict(h) for h in cfg.get('custom_hooks', [])),
                        dict(type='StudyRecordHook', out_file=str(work_dir / RECORD_FILE))]
    # a run of iterations: its AP is logged at its iteration (by epoch, every evaluation is logged at step 0)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, budget.iters // 10), log_metric_by_epoch=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=-1,
                                        save_last=save_checkpoint, save_optimizer=False,
                                        save_param_scheduler=False)
    cfg.log_processor.by_epoch = False
    cfg.work_dir = str(work_dir / MMENGINE_DIR)
    return cfg

"""What ``IPRHead`` is given, checked where a mistake in the config would otherwise fail deep in the model or
train without an error: its arguments, features, loss, training labels and the dataset's keypoint count.

mmpose configs are usually written on top of one of mmpose's own (``_base_``), which bring their own necks,
pipelines and losses; each check names what to change.
"""
import inspect
import math
from typing import Optional, Sequence, Tuple, Union

import torch
from mmpose.models.losses import BoneLoss, MultipleLossWrapper, OKSLoss
from mmpose.registry import MODELS
from torch import Tensor, nn

from ...codecs import DSNTLabel
from ...config_checks import is_whole_pair, refuse_keys_not_taken
from ...ops.integral import BACKGROUNDS, GRID_MODES, NORMALIZERS

# labelled keypoints over which the first training batches are checked for mmpose's label convention
LABEL_CHECK_COUNT = 32

_DSNT_TARGET = "GenerateTarget(encoder=dict(type='DSNTLabel', input_size=...))"


def check_arguments(*, in_channels, in_featuremap_size, num_joints, normalizer: str, beta, learnable_beta: bool,
                    score_radius, debias: bool, debias_background: str, debias_max_background: float, grid: str,
                    decoder: Optional[dict]) -> None:
    """Refuse ``IPRHead`` arguments it could only fail on later, or train on without an error."""
    if not isinstance(in_channels, int):
        raise ValueError(f'IPRHead takes one feature map: `in_channels` must be an int, got {in_channels}')
    # torch fails on a negative count deep inside Conv2d ("negative dimension"), builds a zero one without a word,
    # and names neither the head nor the setting
    for name, value in (('in_channels', in_channels), ('num_joints', num_joints)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f'IPRHead: `{name}` must be a whole number > 0, got {value!r}')
    if not is_whole_pair(in_featuremap_size):  # a bare 8 failed on iteration, (6, 8, 1) on unpacking
        raise ValueError('IPRHead: `in_featuremap_size` must be (w, h) of the last feature map, two whole numbers '
                         f'> 0 (e.g. (6, 8) for a 192x256 input at stride 32), got {in_featuremap_size!r}')
    if normalizer not in NORMALIZERS:
        raise ValueError(f'IPRHead: `normalizer` must be one of {NORMALIZERS}, got {normalizer!r}')
    # a zero beta flattens every map (all keypoints at the crop centre), a negative one inverts them; a
    # non-positive radius scores every keypoint 0: each trains or tests without an error, so refuse here
    for name, value in (('beta', beta), ('score_radius', score_radius)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f'IPRHead: `{name}` must be a finite number > 0, got {value!r}')
    # relu(beta z) / sum relu(beta z) is the same map for every beta > 0 (abs too): a beta to learn or tune
    # there would be logged as a setting while changing nothing
    if normalizer != 'softmax' and (learnable_beta or beta != 1):
        raise ValueError(f'IPRHead: `beta` scales softmax logits only; with normalizer={normalizer!r} it changes '
                         f'nothing, got beta={beta!r}, learnable_beta={learnable_beta!r}')
    if debias and normalizer != 'softmax':
        raise ValueError(f'IPRHead: `debias` is defined for softmax only, got normalizer={normalizer!r}')
    if debias_background not in BACKGROUNDS:
        raise ValueError(f'IPRHead: `debias_background` must be one of {BACKGROUNDS}, got {debias_background!r}')
    if not 0.0 < debias_max_background < 1.0:
        raise ValueError(f'IPRHead: `debias_max_background` must be in (0, 1), got {debias_max_background}')
    if grid not in GRID_MODES:
        raise ValueError(f'IPRHead: `grid` must be one of {GRID_MODES}, got {grid!r}')
    if grid == 'mmpose' and decoder is None:
        raise ValueError("IPRHead: grid='mmpose' needs `decoder` (its input_size defines the grid)")


def check_decoder(decoder) -> None:
    """Refuse a built decoder other than ``DSNTLabel``: the head predicts normalised [-1, 1] coordinates and
    scores, which mmpose's codecs decode otherwise or not at all (a ``TypeError`` at the first validation, after a
    whole epoch, or ``RegressionLabel``'s [0, 1] decoding: keypoints in the wrong place without an error)."""
    if decoder is not None and not isinstance(decoder, DSNTLabel):
        raise ValueError(f'IPRHead: `decoder` must be a DSNTLabel, got {type(decoder).__name__}: the head predicts '
                         "[-1, 1] coordinates with scores; use decoder=dict(type='DSNTLabel', input_size=(w, h)), "
                         "and DSNTLabel in the train pipeline's GenerateTarget too")


def build_loss(loss: Union[dict, nn.Module]) -> nn.Module:
    """The head's ``loss`` built (a loss module already built, from Python, as it is); keys that one of mmpose's
    losses does not take refused by name, pointing at ``_delete_=True`` (the plugin's losses name them
    themselves): a child of the DSNT config that sets ``loss=dict(type='SmoothL1Loss')`` keeps
    ``IntegralJointLoss``'s ``coord_loss``, ``sigma``, ..."""
    if isinstance(loss, nn.Module):
        return loss
    if not isinstance(loss, dict):
        raise TypeError(f'IPRHead: `loss` must be a config dict or a loss module, got {type(loss).__name__}')
    loss_cls = MODELS.get(loss['type']) if isinstance(loss.get('type'), str) else loss.get('type')
    if isinstance(loss_cls, type):  # an unknown name is left to the registry's own error
        refuse_keys_not_taken(loss_cls, loss)
    return MODELS.build(loss)


def coordinate_loss_weights(loss: nn.Module, weights: Tensor) -> Tensor:
    """The keypoint weights as mmpose's coordinate loss ``loss`` takes them: (B, K, 1), as its ``RegressionHead``
    passes them (``MSELoss``, ``WingLoss``, ``SoftWingLoss``, ``MPJPELoss`` fail on (B, K)), and (B, K) for the
    losses that weigh whole keypoints (``BoneLoss``, ``OKSLoss``)."""
    return weights if isinstance(loss, (BoneLoss, OKSLoss)) else weights[..., None]


def check_features(feats: Sequence[Tensor]) -> None:
    """Refuse features that are not a sequence ending in one (B, C, H, W) map: mmpose's regression configs pool
    them to (B, C) with a ``GlobalAveragePooling`` neck, which the deconv stack would meet as a bare shape error;
    a bare tensor (a head called by hand) would be read as its last sample."""
    if isinstance(feats, Tensor) or not isinstance(feats, Sequence) or not feats:
        raise TypeError('IPRHead takes the backbone\'s features as a tuple of (B, C, H, W) maps (the last is used), '
                        f'got {type(feats).__name__}' + (f' of shape {tuple(feats.shape)}: pass (x,)'
                                                         if isinstance(feats, Tensor) else ''))
    feats = feats[-1]
    if feats.ndim != 4:
        raise ValueError(f'IPRHead takes (B, C, H, W) feature maps, got shape {tuple(feats.shape)}: a neck that '
                         "pools them (mmpose's regression configs' GlobalAveragePooling) must go, model.neck=None")


def loss_takes_maps(loss: nn.Module) -> bool:
    """Whether ``loss`` is called as the plugin's losses are, ``(coords, labels, weights, heatmaps=, grids=)``,
    rather than as mmpose's coordinate losses, ``(coords, labels, weights)``; refuses mmpose's losses that need
    what the head does not predict."""
    name = type(loss).__name__
    if isinstance(loss, MultipleLossWrapper):  # it pairs lists of outputs and targets
        raise ValueError(f"IPRHead: `loss` {name} (mmpose DSNTHead's coordinate + heatmap pair) takes lists of "
                         "outputs; use dict(type='IntegralJointLoss') for both terms")
    module = type(loss).__module__
    if module.startswith('mmpose.models.losses.') and module != 'mmpose.models.losses.regression_loss':
        raise ValueError(f"IPRHead: `loss` {name} is not one of mmpose's coordinate losses (it is in "
                         f"{module.rsplit('.', 1)[-1]}: it compares heatmaps, SimCC vectors or other outputs, not the "
                         "head's (B, K, 2) coordinates); use dict(type='IntegralL1Loss'), "
                         "dict(type='IntegralJointLoss') or one of mmpose's regression losses (SmoothL1Loss, L1Loss, "
                         '...)')
    parameters = inspect.signature(loss.forward).parameters
    if 'sigma' in parameters:  # RLELoss: (pred, sigma, target, ...)
        raise ValueError(f"IPRHead: `loss` {name} takes a predicted sigma (mmpose's RLEHead), which IPRHead does "
                         "not predict; use dict(type='IntegralL1Loss') or one of mmpose's coordinate losses")
    # a loss that takes **kwargs is written to the plugin's pattern (mmpose 1.3.2's take none)
    return 'heatmaps' in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def training_labels(samples: Sequence) -> Tuple[Tensor, Tensor]:
    """The (B, K, 2) ``keypoint_labels`` and (B, K) ``keypoint_weights`` of a training batch's samples, or an
    error naming the target the pipeline must make (a base config's heatmap or SimCC target has other keys)."""
    labels = samples[0].gt_instance_labels
    if 'keypoint_labels' not in labels or 'keypoint_weights' not in labels:
        raise ValueError(f"IPRHead.loss: the samples' gt_instance_labels hold {sorted(labels.keys())}, not "
                         f'keypoint_labels and keypoint_weights: the train pipeline must end its targets with '
                         f'{_DSNT_TARGET}. On top of one of mmpose\'s configs, restate its train pipeline, and '
                         "a PipelineSwitchHook's switch_pipeline in custom_hooks (RTMPose's) if it has one")
    return (torch.cat([d.gt_instance_labels.keypoint_labels for d in samples]),
            torch.cat([d.gt_instance_labels.keypoint_weights for d in samples]))


def dataset_joints_problem(samples: Sequence, num_joints: int) -> Optional[str]:
    """Why the dataset's keypoint count (its ``flip_indices``) does not fit the head's, or None. Flip test cannot
    mirror such predictions; without it only an evaluator with a ``pred_converter`` can use them (mmpose's
    ``CocoMetric`` without one fails after the whole inference, inside its NMS)."""
    flip_indices = samples[0].metainfo.get('flip_indices') if samples else None
    if flip_indices is None or len(flip_indices) == num_joints:
        return None
    return (f'IPRHead.predict: the dataset has {len(flip_indices)} keypoints (its flip_indices), the head predicts '
            f'{num_joints}: does model.head.num_joints match the dataset?')


def crop_size_problem(size: Sequence[int], decoder_input_size: Sequence[int]) -> Optional[str]:
    """Why crops of ``size`` (w, h; ``TopdownAffine``'s ``input_size``) do not fit a head decoding for
    ``decoder_input_size``, or None where they do."""
    size, decoder_input_size = tuple(int(s) for s in size), tuple(int(s) for s in decoder_input_size)
    if size == decoder_input_size:
        return None
    return (f"IPRHead: the pipeline's crops are {size} (w, h; TopdownAffine's input_size) but the head decodes "
            f'for {decoder_input_size} (model.head.decoder.input_size): restate the pipelines with the same codec as '
            'the head')


def check_input_size(samples: Sequence, decoder) -> None:
    """Refuse crops (``TopdownAffine``'s ``input_size``, in the samples' metainfo) of another size than the one the
    head's decoder maps predictions back from. A child config that redefines ``codec`` and the head but not the
    pipelines (mmengine keeps the base's, built with its codec) gives such a pair: it trains without an error, and
    every keypoint is then decoded to the wrong input pixels, which mmpose maps back to the image without one."""
    decoder_input_size = getattr(decoder, 'input_size', None)
    size = samples[0].metainfo.get('input_size') if samples and decoder_input_size is not None else None
    problem = crop_size_problem(size, decoder_input_size) if size is not None else None
    if problem:
        raise ValueError(problem)


def check_label_convention(labels: Tensor, weights: Tensor, tally: Tuple[int, float] = (0, math.inf),
                           min_count: int = LABEL_CHECK_COUNT) -> Tuple[int, float]:
    """Refuse labels in the convention of mmpose's ``IntegralRegressionLabel`` and ``RegressionLabel`` ([0, 1] from
    the input's corner) where the head regresses ``DSNTLabel``'s ([-1, 1] around its centre).

    A config that inherits one of mmpose's integral or regression (``td-reg``) configs keeps its pipelines'
    ``GenerateTarget`` encoder: the model then trains without an error towards points shifted by half the input.
    In a top-down crop the person is centred, so among ``min_count`` labelled keypoints at least one lies left of
    or above the centre (a negative label); none does under the other convention. The first training batches are
    counted together until ``min_count`` is reached (one host sync each), so that a batch of one or two people is
    checked too.

    Args:
        labels (Tensor): (B, K, 2) keypoint labels.
        weights (Tensor): (B, K) keypoint weights.
        tally (tuple): (labelled keypoints, smallest label) of the batches before, as returned for them.

    Returns:
        tuple: the tally with this batch; the check is decided once its count reaches ``min_count``.
    """
    labelled = labels[weights > 0]
    labelled = labelled[torch.isfinite(labelled).all(dim=-1)]
    count = tally[0] + len(labelled)
    smallest = min(tally[1], float(labelled.min())) if len(labelled) else tally[1]
    if count >= min_count and smallest >= 0:
        raise ValueError(
            f'IPRHead: none of the first {count} labelled keypoints of training has a negative label, as in '
            'the convention of mmpose\'s IntegralRegressionLabel and RegressionLabel ([0, 1] from the input\'s '
            f"corner); IPRHead regresses DSNTLabel's [-1, 1] around the centre. Use {_DSNT_TARGET} in the train "
            "pipeline (a config inheriting one of mmpose's integral or regression configs keeps its pipelines' "
            'codec)')
    return count, smallest

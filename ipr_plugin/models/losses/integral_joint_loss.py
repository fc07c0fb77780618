"""Coordinate loss plus a heatmap regulariser (DSNT-style joint loss), with an optional annealed weight."""
import logging
import math
from typing import Dict, Optional, Tuple

from mmengine.logging import MessageHub, print_log
from mmpose.registry import MODELS
from torch import Tensor, nn

from ...ops import gaussian_heatmaps, js_divergence, kl_divergence, soft_argmax, variance_regularizer
from ...ops.losses import COORD_LOSSES, coordinate_loss, mask_unweighted_targets, weighted_joint_mean
from ...config_checks import refuse_merged_keys

REGULARIZERS = ('js', 'kl', 'var')


def anneal_factor(progress: float, begin: float, end: float, mode: str) -> float:
    """Weight multiplier that falls from 1 at ``begin`` to 0 at ``end`` (``'linear'`` or ``'cosine'``)."""
    if progress <= begin:
        return 1.0
    if progress >= end:
        return 0.0
    t = (progress - begin) / (end - begin)
    return 1.0 - t if mode == 'linear' else 0.5 * (1.0 + math.cos(math.pi * t))


_ANNEAL_DEFAULTS = dict(mode='linear', by='epoch', begin=0, end=None)


def checked_anneal(anneal: dict) -> dict:
    """``anneal`` with its defaults filled in; ``ValueError`` naming what is wrong. A misspelt key (``start``
    for ``begin``) was ignored, and annealing began at 0; a ``begin`` given as text failed at the first step."""
    def problem(text: str) -> ValueError:
        return ValueError(f'IntegralJointLoss: `anneal` {anneal}: {text}')

    if not isinstance(anneal, dict):
        raise problem('must be a dict(mode=..., by=..., begin=..., end=...)')
    unknown = sorted(set(anneal) - set(_ANNEAL_DEFAULTS))
    if unknown:
        raise problem(f'unknown key(s) {unknown}; it takes {list(_ANNEAL_DEFAULTS)}')
    out = dict(_ANNEAL_DEFAULTS, **anneal)
    if out['mode'] not in ('linear', 'cosine') or out['by'] not in ('epoch', 'iter'):
        raise problem("mode must be 'linear' or 'cosine', by 'epoch' or 'iter'")
    for key, or_none in (('begin', ''), ('end', ' or None')):
        value = out[key]
        if value is None and or_none:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise problem(f'{key} must be a number >= 0 (an {out["by"]}){or_none}')
    if out['end'] is not None and not out['end'] > out['begin']:
        raise problem('end must come after begin')
    return out


@MODELS.register_module()
class IntegralJointLoss(nn.Module):
    """Coordinate loss + heatmap regulariser against a Gaussian at the exact label, generated on the device.

    Returns both terms under their own keys so mmengine logs them separately (and optimises their sum).

    Args:
        coord_loss (str): ``'l1'`` (default), ``'smooth_l1'``, ``'l2'`` or ``'euclidean'``.
        coord_weight (float): Weight of the coordinate term.
        regularizer (str): ``'js'`` (Jensen-Shannon, default, as DSNT), ``'kl'`` (KL(prediction || target))
            or ``'var'`` (variance regulariser: the map's standard deviation around its own soft-argmax should
            match ``sigma`` heatmap cells).
        reg_weight (float): Weight of the regulariser before annealing.
        sigma (float): Standard deviation of the Gaussian target, in heatmap cells.
        anneal (dict, optional): Anneal the regulariser's weight to 0: ``dict(mode='linear' | 'cosine',
            by='epoch' | 'iter', begin=0, end=None)``; ``end=None`` means the end of training (``max_epochs`` /
            ``max_iters`` from mmengine's MessageHub). Progress is read from the MessageHub's ``epoch`` /
            ``iter`` info, host-side integers, so annealing costs no device synchronisation. mmengine's
            ``IterBasedTrainLoop`` never advances the epoch (it counts one epoch of ``max_iters``): anneal such a
            run ``by='iter'``, or the weight stays at ``reg_weight``. With ``end=None`` and ``by='epoch'`` the
            last epoch trains at ``1 / max_epochs`` of the weight with ``'linear'``, about
            ``(pi / (2 max_epochs))^2`` of it with ``'cosine'`` (epochs count from 0).
        **merged: none is taken: keys of an inherited config's loss (``_delete_=True`` missing) are refused.
    """

    def __init__(self,
                 coord_loss: str = 'l1',
                 coord_weight: float = 1.0,
                 regularizer: str = 'js',
                 reg_weight: float = 1.0,
                 sigma: float = 1.0,
                 anneal: Optional[dict] = None,
                 **merged) -> None:
        refuse_merged_keys('IntegralJointLoss', merged)
        super().__init__()
        if coord_loss not in COORD_LOSSES:
            raise ValueError(f'IntegralJointLoss: `coord_loss` must be one of {COORD_LOSSES}, got {coord_loss!r}')
        if regularizer not in REGULARIZERS:
            raise ValueError(f'IntegralJointLoss: `regularizer` must be one of {REGULARIZERS}, '
                             f'got {regularizer!r}')
        if not sigma > 0:
            raise ValueError(f'IntegralJointLoss: `sigma` must be > 0 (heatmap cells), got {sigma!r}')
        if anneal is not None:
            anneal = checked_anneal(anneal)
        self.coord_loss = coord_loss
        self.coord_weight = coord_weight
        self.regularizer = regularizer
        self.reg_weight = reg_weight
        self.sigma = sigma
        self.anneal = anneal
        self._warned = False  # the one-epoch annealing warning, once

    def current_reg_weight(self) -> float:
        """The regulariser's weight at the current epoch/iteration of the running mmengine job."""
        if self.anneal is None:
            return self.reg_weight
        hub = MessageHub.get_current_instance()
        by = self.anneal['by']
        progress = hub.get_info(by) or 0
        end = self.anneal['end']
        if end is None:
            end = hub.get_info(f'max_{by}s')
            if by == 'epoch' and end is not None and end - self.anneal['begin'] <= 1 and not self._warned:
                # epochs count from 0: over one epoch (an IterBasedTrainLoop counts its whole run as one) the
                # weight would never fall
                self._warned = True
                print_log(f'IntegralJointLoss: annealing by epoch over {end} epoch(s) keeps the full regulariser '
                          "weight for the whole run; anneal by='iter' instead", logger='current',
                          level=logging.WARNING)
        if end is None:  # outside a Runner nothing says when training ends: keep the full weight
            return self.reg_weight
        return self.reg_weight * anneal_factor(progress, self.anneal['begin'], end, self.anneal['mode'])

    def forward(self,
                pred_coords: Tensor,
                target_coords: Tensor,
                target_weights: Optional[Tensor] = None,
                heatmaps: Optional[Tensor] = None,
                grids: Optional[Tuple[Tensor, Tensor]] = None) -> Dict[str, Tensor]:
        """Compute both terms.

        Args:
            pred_coords (Tensor): (B, K, 2) predicted normalised coordinates.
            target_coords (Tensor): (B, K, 2) target normalised coordinates.
            target_weights (Tensor, optional): (B, K) joint weights.
            heatmaps (Tensor): (B, K, H, W) predicted probability maps (each summing to 1).
            grids (tuple[Tensor, Tensor]): the head's grids (W,) and (H,) in normalised units (``grids_for``).

        Returns:
            dict: ``loss_coord`` and ``loss_hm`` scalars.
        """
        if heatmaps is None or grids is None:
            raise ValueError('IntegralJointLoss needs the predicted `heatmaps` and the `grids`; use it with '
                             'IPRHead (which passes them)')
        target_coords = mask_unweighted_targets(target_coords, pred_coords, target_weights)
        coord = coordinate_loss(pred_coords, target_coords, self.coord_loss)
        losses = dict(loss_coord=self.coord_weight * weighted_joint_mean(coord, target_weights))
        grid_x, grid_y = grids
        reg_weight = self.current_reg_weight()
        if self.regularizer == 'var':
            # Around the map's own mean, not `pred_coords`: with debias those are corrected for the background
            # share, and the spread around them would penalise the share the correction already removes.
            reg = variance_regularizer(heatmaps, soft_argmax(heatmaps, grid_x, grid_y), grid_x, grid_y, self.sigma)
        else:
            # A constant target: the labels, or for weight-0 joints the detached prediction
            # (mask_unweighted_targets), so that no gradient flows into it.
            target = gaussian_heatmaps(target_coords.detach(), grid_x, grid_y, self.sigma)
            divergence = js_divergence if self.regularizer == 'js' else kl_divergence
            reg = divergence(heatmaps, target)
        losses['loss_hm'] = reg_weight * weighted_joint_mean(reg, target_weights)
        return losses

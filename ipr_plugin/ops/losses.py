"""Per-joint coordinate losses, the visible-joint average and PCK accuracy, as pure functions (no mmpose
imports)."""
from typing import Optional

import torch
from torch import Tensor

COORD_LOSSES = ('l1', 'smooth_l1', 'l2', 'euclidean')


def coordinate_loss(pred: Tensor, target: Tensor, kind: str = 'l1', beta: float = 0.05) -> Tensor:
    """Distance between predicted and target coordinates, one value per joint.

    Args:
        pred (Tensor): (..., D) predicted coordinates (normalised units).
        target (Tensor): (..., D) target coordinates, same shape.
        kind (str): ``'l1'`` (sum of absolute differences: the IPR paper's loss), ``'smooth_l1'`` (Huber with
            transition at ``beta``: L1 beyond ``beta``, quadratic inside), ``'l2'`` (sum of squares) or
            ``'euclidean'`` (L2 norm, as DSNT uses; its gradient at 0 is defined as 0).
        beta (float): Transition point of ``'smooth_l1'`` in normalised units.

    Returns:
        Tensor: (...) per-joint loss in normalised units (``'l2'``: squared units), float64 iff ``pred`` is.
    """
    if pred.shape != target.shape:
        raise ValueError(f'coordinate_loss: `pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} '
                         'must have the same shape')
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    diff = pred.to(dtype) - target.to(dtype)
    if kind == 'l1':
        return diff.abs().sum(-1)
    if kind == 'smooth_l1':
        return torch.nn.functional.smooth_l1_loss(diff, torch.zeros_like(diff), reduction='none',
                                                  beta=beta).sum(-1)
    if kind == 'l2':
        return diff.square().sum(-1)
    if kind == 'euclidean':
        sq = diff.square().sum(-1)
        # sqrt'(0) is infinite; the floor keeps the gradient finite (and exactly 0 at exact hits).
        return torch.where(sq > 0, sq.clamp_min(1e-24).sqrt(), torch.zeros_like(sq))
    raise ValueError(f'coordinate_loss: `kind` must be one of {COORD_LOSSES}, got {kind!r}')


def mask_unweighted_targets(target: Tensor, pred: Tensor, weights: Optional[Tensor]) -> Tensor:
    """``target`` with each joint of weight <= 0 replaced by the (detached) prediction.

    :func:`weighted_joint_mean` drops those joints' values, but autograd still multiplies their zero weight into
    their local gradients: a NaN label at an unlabelled joint gives 0 * NaN = NaN in the backward pass of every
    loss but L1, with a finite loss that no guard notices. A target equal to the prediction has a finite loss.

    Args:
        target (Tensor): (B, K, D) target coordinates.
        pred (Tensor): (B, K, D) predicted coordinates, same shape.
        weights (Tensor, optional): (B, K) joint weights; None: ``target`` as it is.

    Returns:
        Tensor: (B, K, D), ``target``'s dtype.
    """
    if pred.shape != target.shape:
        raise ValueError(f'mask_unweighted_targets: `pred` {tuple(pred.shape)} must have the shape of `target` '
                         f'{tuple(target.shape)}')
    if weights is None or weights.shape != target.shape[:-1]:  # a wrong shape: weighted_joint_mean names it
        return target
    keep = (weights > 0)[..., None]
    return torch.where(keep, target, pred.detach().to(target.dtype))


def weighted_joint_mean(values: Tensor, weights: Optional[Tensor]) -> Tensor:
    """Weighted mean ``sum_k w_k v_k / sum_k w_k`` over the joints with ``w_k > 0`` (the plain mean when
    ``weights`` is None); fractional weights (CrowdPose's 0.2, say) weigh their joints so.

    Joints with weight 0 contribute nothing (not even NaN from their values), and when no joint has weight the
    result is exactly 0 with zero, finite gradients, so an all-invisible batch cannot derail training.

    Args:
        values (Tensor): (B, K) per-joint values.
        weights (Tensor, optional): (B, K) non-negative weights; all ones when None.

    Returns:
        Tensor: scalar.
    """
    if weights is None:  # an empty batch: 0 as documented, not the NaN of an empty mean
        return values.mean() if values.numel() else values.sum()
    if weights.shape != values.shape:
        raise ValueError(f'weighted_joint_mean: `weights` {tuple(weights.shape)} must match the per-joint '
                         f'values {tuple(values.shape)}')
    weights = weights.to(values.dtype)
    positive = weights > 0
    masked = torch.where(positive, values * weights, torch.zeros_like(values))
    total = torch.where(positive, weights, torch.zeros_like(weights)).sum()
    # the weighted mean; with no weighted joint 0 / 1, not 0 / 0 (fractional weights, e.g. CrowdPose's dataset
    # keypoint weights of 0.2, must not be divided by 1 as a floor would)
    return masked.sum() / torch.where(total > 0, total, torch.ones_like(total))


def pck_accuracy(pred: Tensor, target: Tensor, weights: Tensor, thr: float = 0.1) -> Tensor:
    """Fraction of weighted joints within ``thr`` normalised units (0.1 = 5% of the input size, mmpose's
    default PCK threshold for regression heads), computed on the device; 0 when no joint is visible.

    Args:
        pred (Tensor): (B, K, 2) normalised coordinates.
        target (Tensor): (B, K, 2) normalised coordinates.
        weights (Tensor): (B, K) joint weights; a joint counts when its weight is > 0.
        thr (float): distance threshold, in normalised units.

    Returns:
        Tensor: 0-d float32, in [0, 1].
    """
    if pred.shape != target.shape or weights.shape != pred.shape[:-1]:
        raise ValueError(f'pck_accuracy: `pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} must be '
                         f'(B, K, 2) and `weights` {tuple(weights.shape)} (B, K)')
    hit = ((pred.float() - target.float()).norm(dim=-1) < thr).float()
    valid = (weights > 0).float()
    return (hit * valid).sum() / valid.sum().clamp_min(1.0)

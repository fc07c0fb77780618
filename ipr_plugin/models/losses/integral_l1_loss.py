"""True L1 loss on normalised coordinates (the IPR paper's loss)."""
from typing import Dict, Optional

from mmpose.registry import MODELS
from torch import Tensor, nn

from ...ops.losses import coordinate_loss, mask_unweighted_targets, weighted_joint_mean
from ...config_checks import refuse_merged_keys


@MODELS.register_module()
class IntegralL1Loss(nn.Module):
    """L1 distance between predicted and target normalised coordinates, a weighted mean over the joints.

    Unlike ``SmoothL1Loss`` on [0, 1] coordinates (which, with its default beta of 1, is 0.5 x MSE there),
    this is the L1 loss the IPR paper trains with.

    Args:
        loss_weight (float): Multiplier of the loss.
        loss_name (str): Key of the loss in the returned dict (it must contain ``'loss'`` to be optimised and
            logged by mmengine).
        **merged: none is taken: keys of an inherited config's loss (``_delete_=True`` missing) are refused.
    """

    def __init__(self, loss_weight: float = 1.0, loss_name: str = 'loss_kpt', **merged) -> None:
        refuse_merged_keys('IntegralL1Loss', merged)
        super().__init__()
        if not isinstance(loss_name, str) or 'loss' not in loss_name:
            # mmengine optimises the sum of the returned keys containing 'loss': none, and the first step fails
            # with "'float' object has no attribute 'backward'"
            raise ValueError(f'IntegralL1Loss: `loss_name` must contain "loss" for mmengine to optimise it, got '
                             f'{loss_name!r}')
        self.loss_weight = loss_weight
        self.loss_name = loss_name

    def forward(self,
                pred_coords: Tensor,
                target_coords: Tensor,
                target_weights: Optional[Tensor] = None,
                **unused) -> Dict[str, Tensor]:
        """Compute the loss.

        Args:
            pred_coords (Tensor): (B, K, 2) predicted normalised coordinates.
            target_coords (Tensor): (B, K, 2) target normalised coordinates.
            target_weights (Tensor, optional): (B, K) non-negative joint weights (0: ignored; a dataset's
                keypoint weights may be fractional).
            **unused: Heatmaps and grids that the head passes to every loss; not needed here.

        Returns:
            dict: ``{loss_name: scalar}``; exactly 0 with finite gradients when no joint is visible.
        """
        _check_inputs(pred_coords, target_weights)
        target_coords = mask_unweighted_targets(target_coords, pred_coords, target_weights)
        per_joint = coordinate_loss(pred_coords, target_coords, 'l1')
        return {self.loss_name: self.loss_weight * weighted_joint_mean(per_joint, target_weights)}


def _check_inputs(pred_coords, target_weights) -> None:
    """Refuse what mmpose's heads pass (``DSNTHead``: lists of outputs; ``RegressionHead``: (B, K, 1) weights)
    with an error naming the loss to use there, rather than a shape error deep in the arithmetic."""
    shape = tuple(pred_coords.shape) if isinstance(pred_coords, Tensor) else type(pred_coords).__name__
    weights = tuple(target_weights.shape) if isinstance(target_weights, Tensor) else None
    if (isinstance(shape, tuple) and len(shape) == 3 and shape[-1] == 2
            and (target_weights is None or weights == shape[:2])):
        return
    raise ValueError(f'IntegralL1Loss takes (B, K, 2) coordinates and (B, K) weights, as IPRHead passes them; got '
                     f"{shape} and {weights}. In mmpose's own heads use mmpose's L1Loss (this loss returns its "
                     'term by name, which they do not take)')

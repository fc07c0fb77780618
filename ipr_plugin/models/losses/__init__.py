from .integral_joint_loss import IntegralJointLoss
from .integral_l1_loss import IntegralL1Loss

__all__ = ['IntegralL1Loss', 'IntegralJointLoss']

"""Pure tensor math of integral (soft-argmax) pose regression: coordinates, soft-argmax, targets, losses.

The modules here import torch and NumPy only: everything works on plain tensors (and NumPy arrays for the
coordinate conversions), and each function is tested on its own. The registered mmpose classes are thin glue
over them. (Importing ``ipr_plugin.ops`` still runs the package's ``__init__``, which registers the plugin into
mmpose.)
"""
from .coords import flip_coords, flip_maps, normalized_to_pixel, pixel_to_normalized
from .integral import (background_share, debias_coords, debias_from_share, keypoint_scores, log_background_share,
                       make_grid, normalize_heatmaps, soft_argmax)
from .losses import coordinate_loss, mask_unweighted_targets, pck_accuracy, weighted_joint_mean
from .targets import gaussian_heatmaps, js_divergence, kl_divergence, variance_regularizer

__all__ = [
    'pixel_to_normalized', 'normalized_to_pixel', 'flip_coords', 'flip_maps',
    'make_grid', 'normalize_heatmaps', 'soft_argmax', 'log_background_share', 'background_share',
    'debias_from_share', 'debias_coords', 'keypoint_scores',
    'gaussian_heatmaps', 'kl_divergence', 'js_divergence', 'variance_regularizer',
    'coordinate_loss', 'mask_unweighted_targets', 'weighted_joint_mean', 'pck_accuracy',
]

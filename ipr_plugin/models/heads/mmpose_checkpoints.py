"""Checkpoints shared with mmpose's heads, in both directions.

mmpose's ``IntegralRegressionHead`` / ``DSNTHead`` keep their grids in the state dict, as frozen parameters
``linspace_x`` (1, 1, 1, W) and ``linspace_y`` (1, 1, H, 1) in [0, 1) input units: a keypoint is
``x = sum(p * linspace_x) * w`` pixels. ``IPRHead`` derives its grids, so:

- loading, it drops those parameters, and says so where they hold the other grid convention than the head's
  (mmpose's ``j / W`` into ``grid='center'``, or the reverse), as the keypoints then move by half a cell less
  half a pixel;
- saving, it writes them as its own grid in mmpose's units, so that mmpose's config of the same head settings
  (softmax, the same beta, no debias) decodes the checkpoint as ``IPRHead`` does, flip test included, and so
  that the checkpoint records its grid convention.

It also loads a heatmap-trained SimpleBaseline (mmpose's ``HeatmapHead``) into the deconv stack.
"""
import logging
from typing import TYPE_CHECKING, Optional

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

if TYPE_CHECKING:  # the head imports this module
    from .ipr_head import IPRHead

# The layers of mmpose's HeatmapHead (SimpleBaseline), which IPRHead holds as its `simplebaseline_head`.
HEATMAP_HEAD_LAYERS = ('deconv_layers', 'conv_layers', 'final_layer')
LINSPACE = ('linspace_x', 'linspace_y')


def mmpose_linspace(grid: Tensor, input_size: float, axis: int) -> Tensor:
    """A normalised grid (``ipr_plugin.ops.coords``: pixel ``x = ((u + 1) w - 1) / 2``) in mmpose's units
    (``x = e w``): ``e = (u + 1) / 2 - 1 / (2 w)``.

    Args:
        grid: (S,) normalised cell coordinates along one axis.
        input_size: the input's width (``axis`` 0) or height (``axis`` 1) in pixels.
        axis: 0 for x, 1 for y.

    Returns:
        float32 (1, 1, 1, S) for x, (1, 1, S, 1) for y, on the CPU: mmpose's ``linspace_x`` / ``linspace_y``.
    """
    e = (grid.double().cpu() + 1) / 2 - 0.5 / input_size
    return e.float().reshape((1, 1, 1, -1) if axis == 0 else (1, 1, -1, 1))


def _offset(linspace: Tensor) -> Optional[float]:
    """The first cell's coordinate of an evenly spaced mmpose grid (0 for mmpose's own ``j / W``, in [0, 1) units);
    None for anything else (another shape, uneven steps)."""
    values = linspace.detach().double().flatten().cpu()
    if linspace.dim() != 4 or values.numel() < 2:
        return None
    steps = values.diff()
    if not torch.allclose(steps, torch.full_like(steps, 1 / values.numel()), atol=1e-6):
        return None
    return float(values[0])


def grid_mismatch(head: 'IPRHead', state_dict: dict, prefix: str) -> Optional[str]:
    """Why the grid convention a checkpoint's ``linspace_x`` records (mmpose's ``j / W``, or the cell centres)
    differs from ``head``'s (``IPRHead``), naming the setting that reproduces its predictions; None where they agree,
    the checkpoint has none, its heatmap width differs (fine-tuning at another size) or the two conventions
    coincide at this head's sizes (input as large as the maps)."""
    saved = state_dict.get(prefix + 'linspace_x')
    ours = head.mmpose_linspace(0)
    if not isinstance(saved, Tensor) or ours is None or saved.shape != ours.shape:
        return None
    offset = _offset(saved)
    if offset is None or (abs(offset) < 1e-6) == (head.grid_mode == 'mmpose'):
        return None
    # the two grids differ by a constant: half a cell less half a pixel, so every keypoint moves by that much
    (w, h), (W, H) = head.decoder.input_size, head.heatmap_size
    dx, dy = abs(w / (2 * W) - 0.5), abs(h / (2 * H) - 0.5)
    if max(dx, dy) < 1e-6:
        return None
    shift = f'{dx:.3g} px in x, {dy:.3g} px in y'
    debias = (" (with debias, closer only: mmpose's debias formula is another)" if head.debias else '')
    if abs(offset) < 1e-6:  # mmpose's j / W
        return ("IPRHead: the checkpoint's linspace_x is mmpose's j / W grid (a model trained by mmpose's "
                "IntegralRegressionHead or DSNTHead, or by IPRHead(grid='mmpose')), and this head integrates over "
                f"the cell centres (grid='center'): its keypoints are {shift} off that model's. To reproduce them, "
                f'set model.head.grid=mmpose{debias}; to fine-tune from it, nothing is needed')
    return ("IPRHead: the checkpoint's linspace_x is the cell-centre grid of IPRHead(grid='center'), and this head "
            f"uses grid='mmpose': its keypoints are {shift} off that model's. To reproduce them, set "
            'model.head.grid=center')


# The last warning given: a checkpoint is loaded more than once (CheckpointFitHook's check, mmengine's load, an
# EMAHook's copy of the model), and says so once.
_last_warning: Optional[str] = None


def drop_linspace(head: 'IPRHead', state_dict: dict, prefix: str, *args, **kwargs) -> None:
    """Load pre-hook: drop mmpose's grid parameters (``IPRHead`` derives its grids), warning where they record the
    other grid convention (:func:`grid_mismatch`), once for loads in a row of the same kind."""
    global _last_warning
    problem = grid_mismatch(head, state_dict, prefix)
    if problem and problem != _last_warning:
        print_log(problem, logger='current', level=logging.WARNING)
    _last_warning = problem
    for name in LINSPACE:
        state_dict.pop(prefix + name, None)


def add_linspace(head: 'IPRHead', state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """State-dict hook: write the head's grids as mmpose's ``linspace_x`` / ``linspace_y`` (nothing for a head
    without a decoder, whose input size is unknown)."""
    for axis, name in enumerate(LINSPACE):
        linspace = head.mmpose_linspace(axis)
        if linspace is not None:
            state_dict[prefix + name] = linspace


def from_heatmap_head(head: 'IPRHead', state_dict: dict, prefix: str, *args, **kwargs) -> None:
    """Load pre-hook: a heatmap-trained SimpleBaseline (mmpose's ``HeatmapHead``: ``head.deconv_layers.*``,
    ``head.final_layer.*``) into the deconv stack, as mmpose's integral recipes start from one.

    Checkpoints load with ``strict=False`` there (``init_cfg=dict(type='Pretrained')``, ``load_from``), so
    without this rename the stack and final layer would silently keep their random initialisation.
    """
    if head.simplebaseline_head is None:  # no deconv stack: a HeatmapHead's final layer already matches
        return
    names = {key[len(prefix):].split('.', 1)[0] for key in state_dict if key.startswith(prefix)}
    convs_only = isinstance(head.simplebaseline_head.deconv_layers, nn.Identity)
    if convs_only and 'final_layer' in names and not names & {'conv_layers', 'simplebaseline_head'}:
        raise ValueError(
            'IPRHead: the checkpoint has a final layer but none of the convs that conv_out_channels builds here '
            "without deconvs: it comes from a head that dropped them (mmpose's IntegralRegressionHead, or this "
            'one before it built them); load it with conv_out_channels=None')
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].split('.', 1)[0] in HEATMAP_HEAD_LAYERS:
            state_dict[f'{prefix}simplebaseline_head.{key[len(prefix):]}'] = state_dict.pop(key)

"""Loading checkpoints across heads (ipr_plugin.models.heads.mmpose_checkpoints) on small, non-square heads: each axis's
grid, the cases without a warning, heads without a deconv stack, HeatmapHead convs."""
import torch
from heads import H, K, W, logit_head
from mmpose.registry import MODELS

import ipr_plugin  # noqa: F401
from ipr_plugin.models.heads.mmpose_checkpoints import grid_mismatch


def mmpose_linspace_state(width=W):
    return {'linspace_x': (torch.arange(width, dtype=torch.float32) / width).reshape(1, 1, 1, -1)}


def test_the_grid_warning_names_each_axis_own_shift():
    """w / (2 W) - 1/2 in x, h / (2 H) - 1/2 in y: 48 / 24 - 0.5 = 1.5 and 128 / 32 - 0.5 = 3.5."""
    head = logit_head(decoder=dict(type='DSNTLabel', input_size=(48, 128)))
    message = grid_mismatch(head, mmpose_linspace_state(), '')
    assert message is not None and '1.5 px in x, 3.5 px in y' in message


def test_no_grid_warning_where_the_two_grids_coincide():
    """Input as large as the maps (w = W, h = H): j / W and the cell centres are the same pixels."""
    head = logit_head(decoder=dict(type='DSNTLabel', input_size=(W, H)))
    assert grid_mismatch(head, mmpose_linspace_state(), '') is None
    # and the opposite head (grid='mmpose') on a cell-centre checkpoint
    assert grid_mismatch(logit_head(decoder=dict(type='DSNTLabel', input_size=(W, H)), grid='mmpose'),
                         {'linspace_x': logit_head().mmpose_linspace(0)}, '') is None


def test_no_grid_warning_for_an_uneven_linspace():
    """A linspace_x that is neither grid (uneven steps) is not taken for mmpose's j / W."""
    uneven = (torch.arange(W, dtype=torch.float32) / W) ** 2
    assert grid_mismatch(logit_head(), {'linspace_x': uneven.reshape(1, 1, 1, -1)}, '') is None


def test_a_heatmap_head_with_convs_loads_into_the_stack_whole():
    """A SimpleBaseline with extra convs (HeatmapHead's conv_layers): every layer lands in simplebaseline_head,
    loaded non-strictly as mmpose's Pretrained init does, so nothing silently keeps its random init."""
    common = dict(in_channels=8, deconv_out_channels=(8,), deconv_kernel_sizes=(4,), conv_out_channels=(8,),
                  conv_kernel_sizes=(3,))
    hm = MODELS.build(dict(type='HeatmapHead', out_channels=K, **common))
    with torch.no_grad():
        for p in hm.parameters():
            p.normal_()
    ours = MODELS.build(dict(type='IPRHead', in_featuremap_size=(W // 2, H // 2), num_joints=K, **common))
    ours.load_state_dict(hm.state_dict(), strict=False)
    mine = ours.simplebaseline_head.state_dict()
    for key, value in hm.state_dict().items():
        assert torch.equal(mine[key], value), key
    assert any(k.startswith('conv_layers.') for k in hm.state_dict())


def test_a_head_without_a_deconv_stack_loads_its_own_checkpoint():
    """deconv_out_channels=None (a final conv on the backbone's maps, or the logits themselves): the load hooks
    have no SimpleBaseline to rename into, and a round trip must still load."""
    for final_layer in (None, dict(kernel_size=1)):
        head = logit_head(final_layer=final_layer)
        other = logit_head(final_layer=final_layer)
        other.load_state_dict(head.state_dict(), strict=True)
        for key, value in head.state_dict().items():
            assert torch.equal(other.state_dict()[key], value), key

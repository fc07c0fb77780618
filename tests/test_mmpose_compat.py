"""mmpose's released IPR/DSNT/debias heads: their state dicts load strictly into IPRHead, and grid='mmpose'
reproduces their keypoints."""
import numpy as np
import pytest
import torch
from mmpose.registry import MODELS
from mmpose.structures import PoseDataSample

import ipr_plugin  # noqa: F401

K = 17
FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
INPUT = (256, 256)


def heads(mm_type='DSNTHead', **extra):
    common = dict(in_channels=64, in_featuremap_size=(2, 2), num_joints=K, deconv_out_channels=(32, 32),
                  deconv_kernel_sizes=(4, 4), **extra)
    theirs = MODELS.build(dict(type=mm_type, decoder=dict(type='IntegralRegressionLabel', input_size=INPUT,
                                                          heatmap_size=(8, 8), sigma=2.0), **common))
    ours = MODELS.build(dict(type='IPRHead', grid='mmpose', decoder=dict(type='DSNTLabel', input_size=INPUT),
                             **common))
    theirs.init_weights()
    # larger weights than the init's, so maps are far from uniform and any grid mismatch shows
    with torch.no_grad():
        for p in theirs.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs.eval(), ours.eval()


@pytest.mark.parametrize('mm_type', ['DSNTHead', 'IntegralRegressionHead'])
@pytest.mark.parametrize('flip_test', [False, True])
def test_grid_mmpose_reproduces_mmpose_keypoints(mm_type, flip_test):
    theirs, ours = heads(mm_type)
    feats = (torch.randn(3, 64, 2, 2),)
    feats_flip = (torch.randn(3, 64, 2, 2),)
    samples = [PoseDataSample(metainfo=dict(flip_indices=FLIP, input_size=INPUT)) for _ in range(3)]
    inputs = [feats, feats_flip] if flip_test else feats
    cfg = dict(flip_test=flip_test, shift_coords=True)
    with torch.no_grad():
        ref = theirs.predict(inputs, samples, cfg)
        out = ours.predict(inputs, samples, cfg)
    for r, o in zip(ref, out):
        np.testing.assert_allclose(o.keypoints, r.keypoints, atol=1e-4)
        assert ((o.keypoint_scores >= 0) & (o.keypoint_scores <= 1)).all()


def test_centre_grid_differs_from_mmpose_grid():
    """The exact grid moves predictions by half a cell minus half a pixel (here 64 - 0.5 px)."""
    theirs, ours = heads()
    ours_centre = MODELS.build(dict(type='IPRHead', in_channels=64, in_featuremap_size=(2, 2), num_joints=K,
                                    deconv_out_channels=(32, 32), deconv_kernel_sizes=(4, 4),
                                    decoder=dict(type='DSNTLabel', input_size=INPUT)))
    ours_centre.load_state_dict(theirs.state_dict())
    ours_centre.eval()
    feats = (torch.randn(1, 64, 2, 2),)
    samples = [PoseDataSample(metainfo=dict(flip_indices=FLIP, input_size=INPUT))]
    with torch.no_grad():
        a = ours.predict(feats, samples)[0].keypoints
        b = ours_centre.predict(feats, samples)[0].keypoints
    np.testing.assert_allclose(b - a, 256 / 8 / 2 - 0.5, atol=1e-3)

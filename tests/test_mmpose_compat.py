"""mmpose's released IPR/DSNT/debias heads: their state dicts load strictly into IPRHead, and grid='mmpose'
reproduces their keypoints; ours decode alike in mmpose's heads."""
from pathlib import Path

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


def _predict(head, flip_test, seed=0):
    torch.manual_seed(seed)
    feats, feats_flip = (torch.randn(3, 64, 2, 2),), (torch.randn(3, 64, 2, 2),)
    samples = [PoseDataSample(metainfo=dict(flip_indices=FLIP, input_size=INPUT)) for _ in range(3)]
    with torch.no_grad():
        preds = head.predict([feats, feats_flip] if flip_test else feats, samples,
                             dict(flip_test=flip_test, shift_coords=True))
    return np.stack([p.keypoints for p in preds])


@pytest.mark.parametrize('grid', ['center', 'mmpose'])
@pytest.mark.parametrize('flip_test', [False, True])
def test_our_checkpoints_decode_alike_in_mmposes_head(grid, flip_test):
    """Our state dicts carry the grid in mmpose's form (linspace_x/y), so mmpose's own head of the same settings
    reproduces our keypoints from our checkpoint, flip test included (without them it kept its j / W grid, 15.5 px
    off here for grid='center')."""
    theirs, _ = heads()
    ours = MODELS.build(dict(type='IPRHead', grid=grid, in_channels=64, in_featuremap_size=(2, 2), num_joints=K,
                             deconv_out_channels=(32, 32), deconv_kernel_sizes=(4, 4),
                             decoder=dict(type='DSNTLabel', input_size=INPUT)))
    ours.load_state_dict(theirs.state_dict(), strict=True)  # trained weights, far from uniform maps
    state = ours.state_dict()
    assert state['linspace_x'].shape == (1, 1, 1, 8) and state['linspace_y'].shape == (1, 1, 8, 1)
    theirs.load_state_dict(state, strict=True)
    np.testing.assert_allclose(_predict(theirs.eval(), flip_test), _predict(ours.eval(), flip_test), atol=1e-4)


def test_a_checkpoint_of_the_other_grid_is_named_once(monkeypatch):
    """mmpose's checkpoint evaluated on the cell-centre grid (or ours on mmpose's) loads, and its keypoints move by
    half a cell less half a pixel: one warning per head names the setting that reproduces them."""
    import ipr_plugin.models.heads.mmpose_checkpoints as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda message, **kwargs: logged.append(message))
    monkeypatch.setattr(module, '_last_warning', None)
    theirs, ours_mmpose = heads()
    assert logged == []  # mmpose's grid into grid='mmpose'
    def centre_head(input_size=INPUT, **extra):
        return MODELS.build(dict(type='IPRHead', in_channels=64, in_featuremap_size=(2, 2), num_joints=K,
                                 deconv_out_channels=(32, 32), deconv_kernel_sizes=(4, 4),
                                 decoder=dict(type='DSNTLabel', input_size=input_size), **extra))

    centre = centre_head()
    for _ in range(2):  # as CheckpointFitHook and mmengine load the same checkpoint
        centre.load_state_dict(theirs.state_dict(), strict=True)
    [message] = logged
    assert "linspace_x is mmpose's j / W grid" in message and '15.5 px in x, 15.5 px in y' in message
    assert 'set model.head.grid=mmpose' in message
    ours_mmpose.load_state_dict(centre.state_dict())
    assert 'is the cell-centre grid of IPRHead' in logged[-1] and 'set model.head.grid=center' in logged[-1]
    # a checkpoint of the same grid (at another input size too), or of another heatmap size (fine-tuning at
    # another size), says nothing
    logged.clear()
    centre.load_state_dict(centre.state_dict())
    centre.load_state_dict(centre_head(input_size=(128, 128)).state_dict())
    state = theirs.state_dict()
    state['linspace_x'] = torch.arange(16.0).reshape(1, 1, 1, 16) / 16
    centre.load_state_dict(state)
    assert logged == []
    # with debias, the setting brings it closer only
    centre_head(debias=True).load_state_dict(theirs.state_dict())
    assert "set model.head.grid=mmpose (with debias, closer only: mmpose's debias formula is another)" in logged[0]


def _config(path: str):
    from mmengine.config import Config

    from ipr_plugin.paths import REPO_ROOT
    if path.startswith('mmpose::'):
        import mmpose
        return Config.fromfile(str(Path(mmpose.__file__).parent / '.mim' / 'configs' / path[len('mmpose::'):]))
    return Config.fromfile(str(REPO_ROOT / path))


@pytest.mark.parametrize('config', ['configs/ipr_res50_8xb64-210e_coco-256x256.py',
                                    'configs/ipr_res50_debias-8xb64-210e_coco-256x256.py',
                                    'mmpose::body_2d_keypoint/integral_regression/coco/'
                                    'ipr_res50_8xb64-210e_coco-256x256.py'])
def test_the_recipe_start_loads_a_heatmap_checkpoint_whole(config, tmp_path):
    """mmpose's integral recipes start from a heatmap-trained SimpleBaseline (``init_cfg=Pretrained``): backbone,
    deconv stack and final layer. Such a checkpoint names the head's layers ``head.deconv_layers.*``; loaded
    non-strictly, ours once kept only the backbone. Every weight must arrive, in ours as in mmpose's head."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpose')
    hm_cfg = _config('mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py')
    hm_cfg.model.backbone.update(depth=18, init_cfg=None)
    hm_cfg.model.head.in_channels = 512
    heatmap_model = MODELS.build(hm_cfg.model)
    heatmap_model.init_weights()
    with torch.no_grad():  # away from any initialisation, so that a weight left out shows
        for p in heatmap_model.parameters():
            p.add_(torch.randn_like(p))
    checkpoint = tmp_path / 'simplebaseline.pth'
    torch.save(dict(state_dict=heatmap_model.state_dict()), checkpoint)

    cfg = _config(config)
    cfg.model.backbone.depth = 18
    cfg.model.head.in_channels = 512
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint))  # the recipe's, from a local file
    model = MODELS.build(cfg.model)
    model.init_weights()
    ours, start = model.state_dict(), heatmap_model.state_dict()
    assert {k.split('.')[1] for k in start if k.startswith('head.')} == {'deconv_layers', 'final_layer'}
    for key, value in start.items():
        target = key.replace('head.', 'head.simplebaseline_head.', 1) if key.startswith('head.') else key
        assert torch.equal(ours[target], value), f'{config}: {target} not loaded from {key}'


def test_a_head_pickled_whole_with_the_hooks_as_methods_still_loads():
    """A model pickled whole (``torch.save(model)``) before the loading hooks moved to
    :mod:`ipr_plugin.models.heads.mmpose_checkpoints` holds them as bound methods of the head, looked up by name
    when unpickled: the methods stay, and do what the hooks do (mmpose's linspace dropped, a HeatmapHead's layers
    renamed into the deconv stack)."""
    import pickle
    from collections import OrderedDict

    theirs, _ = heads()
    old = MODELS.build(dict(type='IPRHead', grid='mmpose', in_channels=64, in_featuremap_size=(2, 2), num_joints=K,
                            deconv_out_channels=(32, 32), deconv_kernel_sizes=(4, 4),
                            decoder=dict(type='DSNTLabel', input_size=INPUT)))
    old._load_state_dict_pre_hooks = OrderedDict()
    old._register_load_state_dict_pre_hook(old._drop_mmpose_linspace)
    old._register_load_state_dict_pre_hook(old._from_heatmap_head)
    head = pickle.loads(pickle.dumps(old))
    head.load_state_dict(theirs.state_dict(), strict=True)  # linspace_x/_y dropped
    assert all(torch.equal(head.state_dict()[k], v) for k, v in theirs.state_dict().items())
    # a HeatmapHead's names (head.deconv_layers.*, head.final_layer.*) land in the deconv stack
    renamed = {k.replace('simplebaseline_head.', '', 1): v.clone() + 1 for k, v in theirs.state_dict().items()
               if k.startswith('simplebaseline_head.')}
    missing, unexpected = head.load_state_dict(renamed, strict=False)
    assert unexpected == [] and renamed and all(
        torch.equal(head.state_dict()[f'simplebaseline_head.{k}'], v) for k, v in renamed.items())

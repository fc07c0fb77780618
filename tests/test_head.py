"""IPRHead: shapes, exact flip test, real scores, AMP, extreme logits, bad input, registry and checkpoints."""
import numpy as np
import pytest
import torch
from mmpose.registry import MODELS
from mmpose.structures import PoseDataSample
from mmengine.structures import InstanceData

import ipr_plugin  # noqa: F401

K, H, W = 5, 16, 12
FLIP = [0, 2, 1, 4, 3]
INPUT = (48, 64)


def logit_head(**kwargs):
    """A head whose inputs are the logits (no deconv, no final conv): lets tests craft exact heatmaps."""
    cfg = dict(type='IPRHead', in_channels=K, in_featuremap_size=(W, H), num_joints=K,
               deconv_out_channels=None, final_layer=None, decoder=dict(type='DSNTLabel', input_size=INPUT))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def samples(n, labels=None):
    out = []
    for i in range(n):
        s = PoseDataSample(metainfo=dict(flip_indices=FLIP, input_size=INPUT))
        if labels is not None:
            s.gt_instance_labels = InstanceData(keypoint_labels=labels[i:i + 1],
                                                keypoint_weights=torch.ones(1, K))
        out.append(s)
    return out


def test_forward_shapes_and_probabilities():
    head = MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(3, 4), num_joints=K,
                             deconv_out_channels=(16, 16), deconv_kernel_sizes=(4, 4)))
    coords, probs = head((torch.randn(2, 32, 4, 3),))
    assert coords.shape == (2, K, 2) and probs.shape == (2, K, 16, 12)
    assert coords.dtype == torch.float32
    torch.testing.assert_close(probs.sum((-1, -2)), torch.ones(2, K))
    assert not any('grid' in k for k in head.state_dict())  # grids are derived, never saved


def test_flip_test_equals_prediction_on_exactly_mirrored_maps():
    head = logit_head(beta=3.0)
    logits = torch.randn(3, K, H, W) * 2
    # The mirrored image's heatmaps are exact mirrors, with left/right joints swapped.
    mirrored = logits.flip(-1)[:, FLIP]
    plain = head.predict((logits,), samples(3))
    flip = head.predict([(logits,), (mirrored,)], samples(3), dict(flip_test=True))
    for a, b in zip(plain, flip):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-4)
        np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, atol=1e-6)


def test_flip_of_mirrored_coordinates_is_u_to_minus_u():
    head = logit_head(beta=2.0)
    logits = torch.randn(2, K, H, W)
    c, _ = head((logits,))
    cm, _ = head((logits.flip(-1),))
    torch.testing.assert_close(cm[..., 0], -c[..., 0], atol=1e-6, rtol=0)


def test_last_cell_is_reachable():
    head = logit_head()
    logits = torch.full((1, K, H, W), -1e4)
    logits[..., H - 1, W - 1] = 1e4
    pred = head.predict((logits,), samples(1))[0]
    # cell centre of the last cell: input pixel ((W-1)+0.5) * w / W - 0.5
    expected = [(W - 0.5) * INPUT[0] / W - 0.5, (H - 0.5) * INPUT[1] / H - 0.5]
    np.testing.assert_allclose(pred.keypoints[0, 0], expected, atol=1e-3)
    assert pred.keypoint_scores.min() > 0.99


def test_scores_in_unit_interval_and_informative():
    head = logit_head()
    logits = torch.zeros(1, K, H, W)
    logits[0, 0, 5, 5] = 12.0  # sharp peak: confident
    logits[0, 1] = torch.randn(H, W) * 0.1  # nearly flat: not confident
    scores = head.predict((logits,), samples(1))[0].keypoint_scores[0]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[0] > 0.9 and scores[1] < 0.2


def test_autocast_bf16_matches_fp32():
    head = MODELS.build(dict(type='IPRHead', in_channels=16, in_featuremap_size=(3, 4), num_joints=K,
                             deconv_out_channels=(16,), deconv_kernel_sizes=(4,)))
    feats = (torch.randn(2, 16, 4, 3).bfloat16().float(),)
    ref, _ = head(feats)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, probs = head(feats)
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and torch.isfinite(probs).all()
    assert (out - ref).abs().max() < 1e-3
    lhead = logit_head(debias=True, beta=10.0)
    logits = torch.randn(2, K, H, W).bfloat16()
    ref, _ = lhead((logits.float(),))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, _ = lhead((logits,))
    assert (out - ref).abs().max() < 1e-3


@pytest.mark.parametrize('kwargs', [dict(), dict(debias=True, beta=10.0), dict(normalizer='relu'),
                                    dict(normalizer='abs')])
@pytest.mark.parametrize('loss', [dict(type='IntegralL1Loss'), dict(type='IntegralJointLoss')])
def test_huge_logits_stay_finite(kwargs, loss):
    head = logit_head(loss=loss, **kwargs)
    logits = (torch.randn(2, K, H, W) * 1e4).requires_grad_()
    labels = torch.rand(2, K, 2) * 2 - 1
    losses = head.loss((logits,), samples(2, labels))
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(logits.grad).all()
    pred = head.predict((logits.detach(),), samples(2))
    assert all(np.isfinite(p.keypoints).all() and np.isfinite(p.keypoint_scores).all() for p in pred)


def test_loss_terms_are_logged_separately_with_device_accuracy():
    head = logit_head(loss=dict(type='IntegralJointLoss'))
    labels = torch.rand(2, K, 2) * 2 - 1
    losses = head.loss((torch.randn(2, K, H, W),), samples(2, labels))
    assert {'loss_coord', 'loss_hm', 'acc_pose'} <= set(losses)
    assert 0 <= losses['acc_pose'].item() <= 1


@pytest.mark.parametrize('background', ['zero', 'median'])
def test_debias_logs_the_background_share_it_assumes(background):
    """Flat maps: the background holds all the mass, every map is capped. A common shift of +1 moves the
    paper's share (by exp(-beta)) but not the median's; the coordinates follow the share."""
    head = logit_head(debias=True, beta=2.0, debias_background=background)
    labels = torch.rand(2, K, 2) * 2 - 1
    flat = head.loss((torch.zeros(2, K, H, W),), samples(2, labels))
    assert flat['debias_r'].item() == pytest.approx(1.0) and flat['debias_capped'].item() == 1.0
    logits = torch.zeros(2, K, H, W)
    logits[:, :, 3, 4] = 4.0  # one peak cell per map
    peaked, shifted = (head.loss((z,), samples(2, labels)) for z in (logits, logits + 1.0))
    r = H * W / (H * W - 1 + np.exp(8.0))
    assert peaked['debias_r'].item() == pytest.approx(r, rel=1e-5) and peaked['debias_capped'].item() == 0.0
    expected = r * np.exp(-2.0) if background == 'zero' else r
    assert shifted['debias_r'].item() == pytest.approx(expected, rel=1e-5)
    moved = (head((logits + 1.0,))[0] - head((logits,))[0]).abs().max().item()
    assert (moved > 1e-3) == (background == 'zero')
    assert 'debias_r' not in logit_head().loss((logits,), samples(2, labels))
    # keypoints without a label (weight 0) are left out: flat maps there do not count
    unlabelled = samples(2, labels)
    for s in unlabelled:
        s.gt_instance_labels.keypoint_weights[:, 0] = 0
    logits[:, 0] = -1e4  # far below level 0: r overflows to inf there, and must not reach the log
    partial = head.loss((logits,), unlabelled)
    assert partial['debias_r'].item() == pytest.approx(r, rel=1e-5) and partial['debias_capped'].item() == 0.0
    with pytest.raises(ValueError, match='debias_background'):
        logit_head(debias=True, debias_background='mean')


def test_debias_cap_bounds_the_amplification_and_counts_capped_maps():
    """A wide map (r between the two caps): exact under the default cap, at most 1 / (1 - 0.5) = 2x the
    soft-argmax's offset from the centre under a cap of 0.5, and counted as capped there."""
    logits = torch.zeros(1, K, H, W)
    logits[..., 2, 3] = 5.0  # a peak of e^5 = 148 against 191 background cells of 1: r = 192 / 339 = 0.57
    labels = torch.zeros(1, K, 2)
    raw, _ = logit_head()((logits,))
    outs, capped = [], []
    for cap in (0.9, 0.5):
        head = logit_head(debias=True, debias_max_background=cap)
        outs.append(head((logits,))[0])
        capped.append(head.loss((logits,), samples(1, labels))['debias_capped'].item())
    r = H * W / (H * W - 1 + np.exp(5.0))
    assert 0.5 < r < 0.9 and capped == [0.0, 1.0]
    torch.testing.assert_close(outs[0], raw / (1 - r), atol=1e-5, rtol=1e-4)  # centre grid: g = 0
    torch.testing.assert_close(outs[1], raw * 2.0, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match='debias_max_background'):
        logit_head(debias=True, debias_max_background=1.0)


def test_learnable_beta_gets_gradients_and_stays_positive():
    head = logit_head(beta=2.0, learnable_beta=True)
    assert head.beta.item() == pytest.approx(2.0, rel=1e-5)
    losses = head.loss((torch.randn(2, K, H, W),), samples(2, torch.rand(2, K, 2) * 2 - 1))
    losses['loss_kpt'].backward()
    assert head.beta_raw.grad is not None and torch.isfinite(head.beta_raw.grad)
    # an optimiser may push the raw parameter anywhere: beta stays positive and the maps finite
    with torch.no_grad():
        head.beta_raw.fill_(-50.0)
    assert 0 < head.beta.item() < 1e-20
    losses = head.loss((torch.randn(2, K, H, W),), samples(2, torch.rand(2, K, 2) * 2 - 1))
    assert torch.isfinite(losses['loss_kpt']) and losses['beta'] > 0


@pytest.mark.parametrize('option, value', [('beta', 0.0), ('beta', -1.0), ('beta', float('nan')),
                                           ('score_radius', 0), ('score_radius', -1.0),
                                           ('score_radius', float('inf')), ('normalizer', 'sigmoid')])
def test_options_that_would_train_or_test_silently_wrong_are_refused(option, value):
    with pytest.raises(ValueError, match=f'IPRHead: `{option}` must be'):
        logit_head(**{option: value})
    # learnable beta starts from softplus^-1(beta), undefined at 0: the same message, not a math domain error
    with pytest.raises(ValueError, match='IPRHead: `beta` must be'):
        logit_head(beta=0.0, learnable_beta=True)


@pytest.mark.parametrize('final_layer, kernel', [(dict(kernel_size=1), 1), (dict(kernel_size=3, padding=1), 3)])
def test_head_without_a_deconv_stack_has_its_final_conv(final_layer, kernel):
    head = MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K,
                             deconv_out_channels=None, final_layer=final_layer,
                             decoder=dict(type='DSNTLabel', input_size=INPUT)))
    assert head.final_layer.kernel_size == (kernel, kernel) and head.heatmap_size == (W, H)
    coords, maps = head((torch.randn(2, 32, H, W),))
    assert coords.shape == (2, K, 2) and maps.shape == (2, K, H, W)


def test_bad_input_names_the_tensor():
    head = logit_head()
    with pytest.raises(ValueError, match=r'keypoint_labels.*\(2, 4, 2\)'):
        head.loss((torch.randn(2, K, H, W),), samples(2, torch.rand(2, 4, 2)))
    with pytest.raises(ValueError, match=r'logits.*\(2, 3, 16, 12\)'):
        head((torch.randn(2, 3, H, W),))
    bad = torch.randn(1, K, H, W)
    bad[0, 1, 2, 3] = float('nan')
    with pytest.raises(ValueError, match=r'logits of shape \(1, 5, 16, 12\).*NaN'):
        head.predict((bad,), samples(1))
    for pair in ([(bad, ), (bad.nan_to_num(), )], [(bad.nan_to_num(), ), (bad, )]):  # either flip-test pass
        with pytest.raises(ValueError, match=r'logits of shape \(1, 5, 16, 12\).*NaN'):
            head.predict(pair, samples(1), dict(flip_test=True))
    with pytest.raises(ValueError, match='debias'):
        logit_head(debias=True, normalizer='relu')


def test_variance_regulariser_measures_the_map_around_its_own_mean_with_debias():
    # 0.7 of a Gaussian at the label plus 0.3 spread evenly: debias recovers the label, and the map's spread
    # around its own mean is what the regulariser judges, whether or not the coordinates are debiased.
    from ipr_plugin.ops import gaussian_heatmaps, make_grid
    labels = torch.rand(2, K, 2) * 0.8 - 0.4
    probs = 0.7 * gaussian_heatmaps(labels, make_grid(W), make_grid(H), 1.5) + 0.3 / (H * W)
    loss = dict(type='IntegralJointLoss', regularizer='var', sigma=1.5)
    plain = logit_head(loss=loss).loss((probs.log(),), samples(2, labels))
    debiased = logit_head(loss=loss, debias=True, debias_background='median').loss((probs.log(),), samples(2, labels))
    assert debiased['loss_coord'].item() < 0.05 * plain['loss_coord'].item()
    assert debiased['loss_hm'].item() == pytest.approx(plain['loss_hm'].item(), rel=1e-5)


@pytest.mark.parametrize('cast', ['half', 'bfloat16'])
def test_casting_the_head_keeps_the_grids_exact(cast):
    from ipr_plugin.ops import make_grid
    head = getattr(logit_head(), cast)()
    assert head.grid_x.dtype == torch.float32 and torch.equal(head.grid_x, make_grid(W))
    assert torch.equal(head.grid_y, make_grid(H))
    assert head.double().grid_x.dtype == torch.float64  # a wider cast is left as torch makes it


def test_a_misspelt_keypoint_score_mode_is_refused():
    logits = torch.randn(1, K, H, W)
    assert (logit_head().predict((logits,), samples(1), dict(keypoint_scores='ones'))[0].keypoint_scores == 1).all()
    with pytest.raises(ValueError, match=r"keypoint_scores'\] must be 'mass' or 'ones', got 'one'"):
        logit_head().predict((logits,), samples(1), dict(keypoint_scores='one'))


def test_flip_test_scores_do_not_depend_on_which_pass_is_the_flipped_one_on_mmposes_grid():
    """Swapping the two passes mirrors the keypoints and keeps the scores. On the 'mmpose' grid a mirrored map
    is not cell-aligned with the other pass, so scoring an averaged, cell-mirrored map broke this."""
    head = logit_head(grid='mmpose', beta=4.0, score_radius=1.0)
    torch.manual_seed(0)
    a, b = torch.randn(2, K, H, W) * 2, torch.randn(2, K, H, W) * 2
    ab = head.predict([(a,), (b,)], samples(2), dict(flip_test=True))
    ba = head.predict([(b,), (a,)], samples(2), dict(flip_test=True))
    for x, y in zip(ab, ba):
        np.testing.assert_allclose(x.keypoint_scores, y.keypoint_scores[:, FLIP], atol=1e-6)
        np.testing.assert_allclose(x.keypoints[..., 0], INPUT[0] - 1 - y.keypoints[:, FLIP, 0], atol=1e-3)


def _centred_labels(codec, num_people):
    """(num_people, K, 2) labels of people centred in their crops, as top-down crops put them, from ``codec``."""
    from mmpose.registry import KEYPOINT_CODECS
    cfg = dict(type=codec, input_size=INPUT)
    if codec == 'IntegralRegressionLabel':
        cfg.update(heatmap_size=(W, H), sigma=2.0)
    encoder = KEYPOINT_CODECS.build(cfg)
    rng = np.random.default_rng(0)
    people = [np.array(INPUT) / 2 + rng.uniform(-0.3, 0.3, (1, K, 2)) * INPUT for _ in range(num_people)]
    return torch.from_numpy(np.concatenate([encoder.encode(p)['keypoint_labels'] for p in people]))


@pytest.mark.parametrize('codec', ['DSNTLabel', 'IntegralRegressionLabel'])
def test_labels_of_mmposes_integral_codec_are_refused_on_the_first_batch(codec):
    """A config inheriting one of mmpose's integral configs keeps its pipelines' IntegralRegressionLabel, whose
    labels run over [0, 1] from the input's corner: trained on them, the head would learn points shifted by half
    the input, without an error."""
    labels = _centred_labels(codec, 8)
    head = logit_head()
    batch = ((torch.randn(8, K, H, W),), samples(8, labels))
    if codec == 'DSNTLabel':
        assert torch.isfinite(head.loss(*batch)['loss_kpt'])
        return
    with pytest.raises(ValueError, match=r"none of the first 40 labelled keypoints of training has a negative "
                                         r"label, as in mmpose's IntegralRegressionLabel convention"):
        head.loss(*batch)


@pytest.mark.parametrize('codec', ['DSNTLabel', 'IntegralRegressionLabel'])
def test_batches_of_one_person_are_checked_together(codec):
    """With one person per batch (5 keypoints here) the first batches are counted together: mmpose's labels are
    refused on the batch that brings the count to 32, the 7th; DSNT labels train on."""
    labels = _centred_labels(codec, 10)
    head = logit_head()
    for i in range(10):
        batch = ((torch.randn(1, K, H, W),), samples(1, labels[i:i + 1]))
        if codec == 'IntegralRegressionLabel' and i == 6:
            with pytest.raises(ValueError, match='none of the first 35 labelled keypoints'):
                head.loss(*batch)
            return
        assert torch.isfinite(head.loss(*batch)['loss_kpt'])
    assert codec == 'DSNTLabel'


def test_mmposes_own_coordinate_losses_train_the_head():
    """mmpose's coordinate losses take (output, target, weight) and return one tensor: logged as loss_kpt, equal to
    that loss on the head's coordinates. MultipleLossWrapper (DSNTHead's pair) takes lists and is refused when built."""
    labels = _centred_labels('DSNTLabel', 4)
    logits = torch.randn(4, K, H, W, requires_grad=True)
    head = logit_head(loss=dict(type='SmoothL1Loss', use_target_weight=True))
    losses = head.loss((logits,), samples(4, labels))
    assert set(losses) == {'loss_kpt', 'acc_pose'}
    expected = MODELS.build(dict(type='SmoothL1Loss', use_target_weight=True))(
        logit_head()._integrate(logits, clamp=True)[0], labels, torch.ones(4, K))
    torch.testing.assert_close(losses['loss_kpt'], expected)
    losses['loss_kpt'].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"MultipleLossWrapper .* use dict\(type='IntegralJointLoss'\)"):
        logit_head(loss=dict(type='MultipleLossWrapper', losses=[dict(type='SmoothL1Loss'),
                                                                  dict(type='JSDiscretLoss')]))


def test_inputs_from_other_mmpose_configs_are_refused_naming_the_change():
    """What a config written on one of mmpose's bases may still bring: a pooling neck (its regression configs), a
    loss for a predicted sigma (RLE), heatmap or SimCC targets (its heatmap and RTMPose pipelines, also after a
    PipelineSwitchHook's switch), a dataset of another keypoint count."""
    with pytest.raises(ValueError, match=r'takes \(B, C, H, W\) feature maps, got shape \(2, 5\): .* model.neck=None'):
        logit_head().predict((torch.randn(2, K),), samples(2))
    with pytest.raises(ValueError, match=r"RLELoss takes a predicted sigma .* use dict\(type='IntegralL1Loss'\)"):
        logit_head(loss=dict(type='RLELoss'))
    heatmap_samples = samples(2)
    for sample in heatmap_samples:
        sample.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, K))
    with pytest.raises(ValueError, match=r"gt_instance_labels hold \['keypoint_weights'\], not keypoint_labels .*"
                                         r"DSNTLabel.*switch_pipeline"):
        logit_head().loss((torch.randn(2, K, H, W),), heatmap_samples)
    other_dataset = samples(2)
    for sample in other_dataset:
        sample.set_metainfo(dict(flip_indices=FLIP[:4]))
    with pytest.raises(ValueError, match='the dataset has 4 keypoints .*, the head predicts 5: does model.head'):
        logit_head().predict([(torch.randn(2, K, H, W),)] * 2, other_dataset, dict(flip_test=True))


def test_without_flip_test_a_dataset_of_another_keypoint_count_is_warned_of_once(monkeypatch):
    """An evaluator's pred_converter may map the head's keypoints onto the dataset's (mmpose's CocoMetric takes
    one): predicted, with one warning that names the mismatch."""
    import ipr_plugin.models.heads.ipr_head as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda message, **kwargs: logged.append(message))
    other_dataset = samples(2)
    for sample in other_dataset:
        sample.set_metainfo(dict(flip_indices=FLIP[:4]))
    head = logit_head()
    for _ in range(2):
        preds = head.predict((torch.randn(2, K, H, W),), other_dataset, dict(flip_test=False))
        assert preds[0].keypoints.shape == (1, K, 2)
    [message] = logged
    assert 'the dataset has 4 keypoints (its flip_indices), the head predicts 5' in message
    assert 'pred_converter' in message


def test_a_loss_written_with_kwargs_is_given_the_maps():
    """A loss in the plugin's pattern, ``forward(pred, target, weights=None, **kwargs)``, gets heatmaps and grids
    (mmpose 1.3.2's losses take no **kwargs)."""
    from mmengine.model import BaseModule

    @MODELS.register_module(force=True)
    class MapEntropyForTest(BaseModule):
        def forward(self, pred, target, weights=None, **kwargs):
            maps = kwargs['heatmaps']
            return dict(loss_kpt=(pred - target).abs().mean(), loss_entropy=-(maps * maps.clamp_min(1e-12).log()).sum(
                (-2, -1)).mean(), grids=torch.tensor(float(len(kwargs['grids']))))

    labels = _centred_labels('DSNTLabel', 2)
    losses = logit_head(loss=dict(type='MapEntropyForTest')).loss((torch.randn(2, K, H, W),), samples(2, labels))
    assert torch.isfinite(losses['loss_entropy']) and losses['grids'] == 2


def test_a_pipeline_cropping_at_another_size_than_the_decoder_is_refused_in_training_and_prediction():
    """A child config that changes the codec and the head but not the base's pipelines trains without an error and
    decodes every keypoint to the wrong pixels; the head compares the crops' size (metainfo) with its decoder's."""
    head = logit_head()
    other = samples(2, torch.rand(2, K, 2) * 2 - 1)
    for s in other:
        s.set_metainfo(dict(input_size=(64, 64)))
    with pytest.raises(ValueError, match=r"crops are \(64, 64\).*decodes for \(48, 64\)"):
        head.loss((torch.randn(2, K, H, W),), other)
    with pytest.raises(ValueError, match=r"crops are \(64, 64\).*decodes for \(48, 64\)"):
        head.predict((torch.randn(2, K, H, W),), other)
    head.predict((torch.randn(2, K, H, W),), samples(2))  # the matching size predicts


def test_convs_without_a_deconv_stack_are_built_as_mmposes_heatmap_head_builds_them():
    from mmpose.models.heads import HeatmapHead
    args = dict(in_channels=32, out_channels=K, deconv_out_channels=None, conv_out_channels=(16, 16),
                conv_kernel_sizes=(3, 3))
    head = MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K,
                             deconv_out_channels=None, conv_out_channels=(16, 16), conv_kernel_sizes=(3, 3),
                             decoder=dict(type='DSNTLabel', input_size=INPUT)))
    reference = HeatmapHead(**args)
    assert (sum(p.numel() for p in head.parameters()) == sum(p.numel() for p in reference.parameters()) > 32 * K)
    assert head.simplebaseline_head.state_dict().keys() == reference.state_dict().keys()
    coords, maps = head((torch.randn(2, 32, H, W),))
    assert coords.shape == (2, K, 2) and maps.shape == (2, K, H, W)


def test_maps_of_another_size_than_configured_are_warned_of_once_in_training_and_prediction(monkeypatch):
    import ipr_plugin.models.heads.ipr_head as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda message, **kwargs: logged.append(message))

    def build():
        return MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K,
                                 deconv_out_channels=None, final_layer=dict(kernel_size=3),  # unpadded: 2 cells less
                                 decoder=dict(type='DSNTLabel', input_size=INPUT)))

    head, feats = build(), (torch.randn(2, 32, H, W),)
    coords, maps = head(feats)  # forward alone (an ONNX export at another input size) says nothing
    assert maps.shape[-2:] == (H - 2, W - 2) and not logged
    head.loss(feats, samples(2, torch.rand(2, K, 2) * 2 - 1))
    head.predict(feats, samples(2))
    [message] = logged
    assert 'the maps are 10x14' in message and 'configured 12x16' in message
    fresh = build()  # the configured size: nothing
    fresh.loss((torch.randn(2, 32, H + 2, W + 2),), samples(2, torch.rand(2, K, 2) * 2 - 1))
    configured = (torch.randn(2, 32, H + 2, W + 2),)
    fresh.predict([configured, configured], samples(2), dict(flip_test=True))
    assert len(logged) == 1


def test_a_checkpoint_of_a_head_that_dropped_its_convs_is_refused_by_name():
    """mmpose's IntegralRegressionHead (and this head before it built them) ignores conv_out_channels without
    deconvs: its state dict holds a final layer on the backbone's channels only."""
    cfg = dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K, deconv_out_channels=None,
               decoder=dict(type='DSNTLabel', input_size=INPUT))
    dropped = MODELS.build(cfg).state_dict()  # no convs: final_layer.* only
    head = MODELS.build(dict(cfg, conv_out_channels=(16, ), conv_kernel_sizes=(3, )))
    with pytest.raises(ValueError, match='load it with conv_out_channels=None'):
        head.load_state_dict(dropped)
    head.load_state_dict(head.state_dict())  # its own checkpoints load


@pytest.mark.parametrize('normalizer', ['relu', 'abs'])
def test_a_beta_that_cannot_change_a_relu_or_abs_map_is_refused(normalizer):
    from ipr_plugin.ops import normalize_heatmaps
    logits = torch.randn(2, K, H, W)
    # why: the normalised map is the same at any beta > 0, so a tuned or learnt beta would only be a label
    torch.testing.assert_close(normalize_heatmaps(logits, normalizer, beta=10.0),
                               normalize_heatmaps(logits, normalizer))
    for kwargs in (dict(beta=10.0), dict(learnable_beta=True)):
        with pytest.raises(ValueError, match=f"`beta` scales softmax logits only; with normalizer='{normalizer}'"):
            logit_head(normalizer=normalizer, **kwargs)
    logit_head(normalizer=normalizer)  # beta 1, not learnt: builds

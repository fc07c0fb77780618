"""IPRHead: shapes, exact flip test, real scores, AMP, extreme logits, losses, registry and checkpoints (what it
refuses or warns of in a config or its inputs: test_head_inputs.py)."""
from typing import Union

import numpy as np
import pytest
import torch
from heads import FLIP, INPUT, H, K, W, centred_labels, logit_head, samples
from mmpose.registry import MODELS

import ipr_plugin  # noqa: F401


def test_forward_shapes_and_probabilities():
    head = MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(3, 4), num_joints=K,
                             deconv_out_channels=(16, 16), deconv_kernel_sizes=(4, 4)))
    coords, probs = head((torch.randn(2, 32, 4, 3),))
    assert coords.shape == (2, K, 2) and probs.shape == (2, K, 16, 12)
    assert coords.dtype == torch.float32
    torch.testing.assert_close(probs.sum((-1, -2)), torch.ones(2, K))
    assert not any('grid' in k for k in head.state_dict())  # grids are derived, never saved


def mirrored(maps: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) maps of the horizontally flipped image: mirrored in x, left/right joints swapped (FLIP)."""
    return maps.flip(-1)[:, FLIP]


def softmax_maps(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """(B, K, H, W) probability maps by definition: softmax of ``beta * logits`` over each map's H x W cells."""
    return torch.softmax(beta * logits.flatten(-2), dim=-1).view_as(logits)


def predicted_maps(head: torch.nn.Module, feats: Union[tuple, list], test_cfg: dict) -> torch.Tensor:
    """(B, K, H, W) heatmaps that ``head.predict`` returns with ``output_heatmaps``, one PixelData per sample;
    ``feats`` is ``(logits,)``, or ``[(logits,), (flipped_logits,)]`` with flip test."""
    logits = feats[0][0] if isinstance(feats, list) else feats[0]
    _, fields = head.predict(feats, samples(len(logits)), dict(test_cfg, output_heatmaps=True))
    return torch.stack([f.heatmaps for f in fields])


def test_flip_test_equals_prediction_on_exactly_mirrored_maps():
    head = logit_head(beta=3.0)
    logits = torch.randn(3, K, H, W) * 2
    # The mirrored image's heatmaps are exact mirrors, with left/right joints swapped.
    mirrored_logits = mirrored(logits)
    plain = head.predict((logits,), samples(3))
    flip = head.predict([(logits,), (mirrored_logits,)], samples(3), dict(flip_test=True))
    for a, b in zip(plain, flip):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-4)
        np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, atol=1e-6)


def test_flip_test_heatmaps_average_the_plain_and_the_mirrored_flipped_pass():
    """output_heatmaps with flip test: the plain pass's maps averaged with the flipped pass's, mirrored back and
    joint-swapped, so that both are in the unflipped frame; on an exactly mirrored pair that is the plain maps."""
    beta = 3.0
    head = logit_head(beta=beta)
    torch.manual_seed(0)
    plain, flipped = torch.randn(2, K, H, W) * 2, torch.randn(2, K, H, W) * 2
    expected = 0.5 * (softmax_maps(plain, beta) + mirrored(softmax_maps(flipped, beta)))
    torch.testing.assert_close(predicted_maps(head, [(plain,), (flipped,)], dict(flip_test=True)), expected)
    torch.testing.assert_close(predicted_maps(head, [(plain,), (mirrored(plain),)], dict(flip_test=True)),
                               predicted_maps(head, (plain,), dict()))


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


@pytest.mark.parametrize('radius', [1.5, 3.0])
def test_score_of_a_flat_map_is_the_share_of_cells_within_score_radius(radius):
    """On flat maps every cell holds 1 / (H W) and the keypoint is the grid's centre, cell coordinates
    ((W - 1) / 2, (H - 1) / 2): the score is the count of cell centres within ``score_radius`` cells of it, over
    H W. Their squared distances are n + 1/2, so no cell is near either radius (neither is the default, 2)."""
    head = logit_head(score_radius=radius)
    scores = head.predict((torch.zeros(1, K, H, W),), samples(1))[0].keypoint_scores
    cx, cy = (W - 1) / 2, (H - 1) / 2
    inside = sum((x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2 for x in range(W) for y in range(H))
    np.testing.assert_allclose(scores, np.full((1, K), inside / (H * W)), rtol=1e-5)


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


def test_acc_pose_counts_labelled_joints_only():
    """Every map peaks on one cell; each joint's label is that cell (a hit) or a whole unit away in x (a miss).
    The unlabelled joints are hits: counting them would raise the accuracy (PCK over the labelled joints)."""
    from ipr_plugin.ops import make_grid
    hits = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 1, 0, 0]], dtype=torch.bool)
    weights = torch.tensor([[0.0, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    logits = torch.full((2, K, H, W), -1e4)
    logits[..., 4, 3] = 1e4
    peak = torch.stack((make_grid(W)[3], make_grid(H)[4]))
    batch = samples(2, torch.where(hits[..., None], peak, peak + torch.tensor([1.0, 0.0])))
    for sample, w in zip(batch, weights):
        sample.gt_instance_labels.keypoint_weights = w[None]
    labelled = weights > 0
    expected = (hits & labelled).sum().item() / labelled.sum().item()
    assert logit_head().loss((logits,), batch)['acc_pose'].item() == pytest.approx(expected)


def test_debias_clamp_in_loss_false_trains_a_capped_keypoint_beyond_the_range():
    """A flat map tilted towards the bottom-right corner: r is above the cap of 0.9, and the soft-argmax's 0.15,
    amplified 10x, passes the last cell centre in x and y. Clamped in the loss (the default), as in prediction, the
    keypoint gets no gradient; with debias_clamp_in_loss=False the loss sees the unclamped value and trains it."""
    from ipr_plugin.ops import background_share, make_grid
    grid_x, grid_y = make_grid(W), make_grid(H)
    last = torch.stack((grid_x[-1], grid_y[-1])).expand(1, K, 2)
    grads = {}
    for clamp in (True, False):
        logits = (0.45 * (grid_x + grid_y[:, None])).expand(1, K, H, W).clone().requires_grad_()
        head = logit_head(debias=True, debias_clamp_in_loss=clamp)
        head.loss((logits,), samples(1, torch.zeros(1, K, 2)))['loss_kpt'].backward()
        grads[clamp] = logits.grad.abs().max().item()
        torch.testing.assert_close(head((logits,))[0], last)  # prediction is clamped either way
    assert background_share(logits, 1.0).min().item() > 0.9
    assert grads[True] == 0.0 and grads[False] > 1e-4


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


def test_mmposes_own_coordinate_losses_train_the_head():
    """mmpose's coordinate losses take (output, target, weight) and return one tensor: logged as loss_kpt, equal to
    that loss on the head's coordinates. MultipleLossWrapper (DSNTHead's pair) takes lists and is refused when built."""
    labels = centred_labels('DSNTLabel', 4)
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

    labels = centred_labels('DSNTLabel', 2)
    losses = logit_head(loss=dict(type='MapEntropyForTest')).loss((torch.randn(2, K, H, W),), samples(2, labels))
    assert torch.isfinite(losses['loss_entropy']) and losses['grids'] == 2


def one_hot_logits(i, j, b=1):
    logits = torch.full((b, K, H, W), -1e4)
    logits[..., i, j] = 1e4
    return logits


def test_mmpose_grid_uses_each_axis_own_input_size():
    """grid='mmpose' reproduces mmpose's x = j / W * w and y = i / H * h; INPUT is not square (48 x 64), so the
    y grid needs h, not w."""
    head = logit_head(grid='mmpose')
    i, j = 11, 7
    pred = head.predict((one_hot_logits(i, j),), samples(1))[0]
    np.testing.assert_allclose(pred.keypoints[0], np.tile([j / W * INPUT[0], i / H * INPUT[1]], (K, 1)), atol=1e-3)


def test_default_score_radius_is_two_cells():
    scores = logit_head().predict((torch.zeros(1, K, H, W),), samples(1))[0].keypoint_scores
    cx, cy = (W - 1) / 2, (H - 1) / 2
    inside = sum((x - cx) ** 2 + (y - cy) ** 2 <= 4.0 for x in range(W) for y in range(H))
    np.testing.assert_allclose(scores, np.full((1, K), inside / (H * W)), rtol=1e-5)


@pytest.mark.parametrize('loss', [dict(type='IntegralL1Loss'), dict(type='IntegralJointLoss')])
def test_the_heads_loss_leaves_unlabelled_joints_out(loss):
    """A joint of weight 0 whose label is far from the prediction changes no term of the head's loss."""
    torch.manual_seed(0)
    logits = torch.randn(2, K, H, W)
    labels = centred_labels('DSNTLabel', 2)
    head = logit_head(loss=loss)
    far = labels.clone()
    far[:, 0] = torch.tensor([0.9, -0.9])
    batches = [samples(2, labels), samples(2, far)]
    for batch in batches:
        for s in batch:
            s.gt_instance_labels.keypoint_weights[:, 0] = 0
    near_loss, far_loss = (head.loss((logits,), b) for b in batches)
    for key in near_loss:
        assert far_loss[key].item() == pytest.approx(near_loss[key].item(), rel=1e-6), key


def test_a_nan_label_at_an_unlabelled_joint_trains_mmposes_losses_finitely():
    """mmpose's SmoothL1Loss multiplies target by weight: 0 * NaN would make the loss NaN, so the head replaces
    unlabelled targets before calling it."""
    torch.manual_seed(0)
    logits = torch.randn(2, K, H, W, requires_grad=True)
    labels = centred_labels('DSNTLabel', 2)
    labels[:, 1] = float('nan')
    batch = samples(2, labels)
    for s in batch:
        s.gt_instance_labels.keypoint_weights[:, 1] = 0
    head = logit_head(loss=dict(type='SmoothL1Loss', use_target_weight=True))
    losses = head.loss((logits,), batch)
    assert torch.isfinite(losses['loss_kpt'])
    losses['loss_kpt'].backward()
    assert torch.isfinite(logits.grad).all()


def test_debias_clamps_in_the_loss_by_default():
    """debias_clamp_in_loss defaults to True: a capped keypoint amplified past the last cell centre gets no
    gradient from the default head's loss (a flat map tilted towards the bottom-right corner)."""
    from ipr_plugin.ops import make_grid
    grid_x, grid_y = make_grid(W), make_grid(H)
    logits = (0.45 * (grid_x + grid_y[:, None])).expand(1, K, H, W).clone().requires_grad_()
    logit_head(debias=True).loss((logits,), samples(1, torch.zeros(1, K, 2)))['loss_kpt'].backward()
    assert logits.grad.abs().max().item() == 0.0

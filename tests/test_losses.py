"""IntegralL1Loss / IntegralJointLoss: exact values, all-invisible batches, regularisers and annealing."""
import math

import pytest
import torch
from mmengine.logging import MessageHub

import ipr_plugin  # noqa: F401
from ipr_plugin.models.losses.integral_joint_loss import anneal_factor
from ipr_plugin.ops import gaussian_heatmaps, make_grid, pck_accuracy
from ipr_plugin.ops.losses import coordinate_loss, weighted_joint_mean
from mmpose.registry import MODELS

B, K, H, W = 2, 5, 16, 12


def grids():
    return make_grid(W), make_grid(H)


def test_l1_is_true_l1_over_visible_joints():
    loss = MODELS.build(dict(type='IntegralL1Loss'))
    pred, target = torch.rand(B, K, 2), torch.rand(B, K, 2)
    weights = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.float32)
    expected = ((pred - target).abs().sum(-1) * weights).sum() / weights.sum()
    assert loss(pred, target, weights)['loss_kpt'] == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize('cfg', [dict(type='IntegralL1Loss'), dict(type='IntegralJointLoss'),
                                 dict(type='IntegralJointLoss', regularizer='var')])
def test_all_invisible_gives_exact_zero_and_finite_grads(cfg):
    loss = MODELS.build(cfg)
    pred = torch.rand(B, K, 2, requires_grad=True)
    logits = torch.randn(B, K, H, W, requires_grad=True)
    probs = logits.flatten(2).softmax(-1).view(B, K, H, W)
    out = loss(pred, torch.rand(B, K, 2), torch.zeros(B, K), heatmaps=probs, grids=grids())
    total = sum(out.values())
    assert total.item() == 0.0
    total.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad == 0).all()
    assert logits.grad is None or torch.isfinite(logits.grad).all()


def test_fractional_weights_give_the_weighted_mean():
    values = torch.tensor([[2.0, 5.0, 7.0]])
    assert weighted_joint_mean(values, torch.tensor([[0.2, 0.0, 0.0]])).item() == pytest.approx(2.0)
    assert weighted_joint_mean(values, torch.tensor([[0.5, 1.5, 0.0]])).item() == pytest.approx(4.25)
    assert weighted_joint_mean(values, torch.zeros(1, 3)).item() == 0.0


def test_l1_ignores_nan_at_zero_weight_joints():
    loss = MODELS.build(dict(type='IntegralL1Loss'))
    pred = torch.rand(B, K, 2)
    pred[:, 0] = float('nan')
    pred.requires_grad_()
    weights = torch.ones(B, K)
    weights[:, 0] = 0
    value = loss(pred, torch.rand(B, K, 2), weights)['loss_kpt']
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize('cfg', [dict(type='IntegralL1Loss')]
                         + [dict(type='IntegralJointLoss', coord_loss=c) for c in ('smooth_l1', 'l2', 'euclidean')]
                         + [dict(type='IntegralJointLoss', regularizer=r) for r in ('js', 'kl', 'var')])
def test_a_nan_label_at_a_zero_weight_joint_leaves_loss_and_gradients_finite(cfg):
    """The loss drops an unlabelled joint's value, but autograd would still form 0 * NaN in its backward pass:
    a finite loss with NaN gradients, which no loss guard notices."""
    loss = MODELS.build(cfg)
    pred = (torch.rand(B, K, 2) - 0.5).requires_grad_()
    logits = torch.randn(B, K, H, W, requires_grad=True)
    probs = logits.flatten(2).softmax(-1).view(B, K, H, W)
    target, weights = torch.rand(B, K, 2) - 0.5, torch.ones(B, K)
    target[:, 1], weights[:, 1] = float('nan'), 0
    out = loss(pred, target, weights, heatmaps=probs, grids=grids())
    clean = loss(pred, torch.where(weights[..., None] > 0, target, 0.0), weights, heatmaps=probs, grids=grids())
    for key, value in out.items():
        assert value.item() == pytest.approx(clean[key].item(), rel=1e-6)  # the joint counts for nothing
    sum(out.values()).backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[:, 1] == 0).all()
    assert logits.grad is None or torch.isfinite(logits.grad).all()  # IntegralL1Loss does not use the maps


def test_joint_loss_terms_are_separate_and_zero_at_the_target():
    loss = MODELS.build(dict(type='IntegralJointLoss', sigma=1.5))
    target = torch.rand(B, K, 2) * 1.2 - 0.6
    probs = gaussian_heatmaps(target, *grids(), sigma=1.5)
    out = loss(target.clone(), target, torch.ones(B, K), heatmaps=probs, grids=grids())
    assert set(out) == {'loss_coord', 'loss_hm'}
    assert out['loss_coord'].item() == pytest.approx(0, abs=1e-7)
    assert out['loss_hm'].item() == pytest.approx(0, abs=1e-5)
    flat = torch.full((B, K, H, W), 1.0 / (H * W))
    assert loss(target, target, torch.ones(B, K), heatmaps=flat, grids=grids())['loss_hm'] > 0.05


@pytest.mark.parametrize('kind', ['l1', 'smooth_l1', 'l2', 'euclidean'])
def test_coordinate_losses(kind):
    d = torch.tensor([[0.3, -0.4]])
    value = coordinate_loss(d, torch.zeros_like(d), kind).item()
    expected = dict(l1=0.7, smooth_l1=0.3 - 0.025 + 0.4 - 0.025, l2=0.25, euclidean=0.5)[kind]
    assert value == pytest.approx(expected, rel=1e-6)
    zero = torch.zeros(1, 2, requires_grad=True)
    coordinate_loss(zero, torch.zeros(1, 2), kind).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_anneal_factor_shapes():
    assert anneal_factor(0, 0, 10, 'linear') == 1.0 and anneal_factor(10, 0, 10, 'linear') == 0.0
    assert anneal_factor(2.5, 0, 10, 'linear') == pytest.approx(0.75)
    assert anneal_factor(5, 0, 10, 'cosine') == pytest.approx(0.5)
    assert anneal_factor(2.5, 0, 10, 'cosine') == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


@pytest.mark.parametrize('anneal, words', [
    (dict(mode='linear', start=5), r"unknown key\(s\) \['start'\]; it takes \['mode', 'by', 'begin', 'end'\]"),
    (dict(mode='exp'), "mode must be 'linear' or 'cosine', by 'epoch' or 'iter'"),
    (dict(by='step'), "mode must be 'linear' or 'cosine'"),
    (dict(begin='5'), 'begin must be a number >= 0'),
    (dict(begin=-1), 'begin must be a number >= 0'),
    (dict(end=True), 'end must be a number >= 0 .* or None'),
    (dict(begin=10, end=5), 'end must come after begin'),
    (dict(begin=5, end=5), 'end must come after begin'),
    ('linear', 'must be a dict')])
def test_a_bad_anneal_is_refused_as_the_loss_is_built(anneal, words):
    """A misspelt key was ignored (annealing began at 0, not at 'start'); text for a number failed at the first
    step; an end before its beginning annealed nothing."""
    with pytest.raises(ValueError, match=r'IntegralJointLoss: `anneal` .*: ' + words):
        MODELS.build(dict(type='IntegralJointLoss', anneal=anneal))
    assert MODELS.build(dict(type='IntegralJointLoss', anneal=dict(begin=2, end=8.5))).anneal == dict(
        mode='linear', by='epoch', begin=2, end=8.5)


def test_anneal_reads_the_message_hub():
    hub = MessageHub.get_instance('ipr_test_anneal')
    loss = MODELS.build(dict(type='IntegralJointLoss', reg_weight=2.0, anneal=dict(mode='linear', by='iter')))
    hub.update_info('iter', 25)
    hub.update_info('max_iters', 100)
    assert loss.current_reg_weight() == pytest.approx(1.5)
    hub.update_info('iter', 150)
    assert loss.current_reg_weight() == 0.0


def test_annealing_by_epoch_over_a_single_epoch_is_reported_once(monkeypatch):
    """An IterBasedTrainLoop counts its whole run as one epoch: annealed by epoch, the weight never falls."""
    import ipr_plugin.models.losses.integral_joint_loss as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kwargs: logged.append(msg))
    hub = MessageHub.get_instance('ipr_test_anneal_one_epoch')
    loss = MODELS.build(dict(type='IntegralJointLoss', anneal=dict(mode='cosine', by='epoch')))
    hub.update_info('epoch', 0)
    hub.update_info('max_epochs', 1)
    assert loss.current_reg_weight() == loss.current_reg_weight() == 1.0
    assert len(logged) == 1 and "anneal by='iter' instead" in logged[0]
    hub.update_info('max_epochs', 4)
    fresh = MODELS.build(dict(type='IntegralJointLoss', anneal=dict(mode='linear', by='epoch')))
    hub.update_info('epoch', 2)
    assert fresh.current_reg_weight() == pytest.approx(0.5) and len(logged) == 1


def test_bad_config_names_the_option():
    with pytest.raises(ValueError, match='regularizer'):
        MODELS.build(dict(type='IntegralJointLoss', regularizer='mse'))
    with pytest.raises(ValueError, match='coord_loss'):
        MODELS.build(dict(type='IntegralJointLoss', coord_loss='l3'))
    with pytest.raises(ValueError, match='sigma'):
        MODELS.build(dict(type='IntegralJointLoss', sigma=0))


def test_pck_accuracy_counts_weighted_joints_within_the_threshold():
    from ipr_plugin.ops import pck_accuracy
    target = torch.zeros(1, 4, 2)
    pred = torch.tensor([[[0.05, 0.0], [0.0, 0.2], [0.06, 0.08], [0.0, 0.0]]])  # distances 0.05, 0.2, 0.1, 0
    weights = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last joint (a hit) is unlabelled
    assert pck_accuracy(pred, target, weights).item() == pytest.approx(1 / 3)  # 0.1 itself is not within
    assert pck_accuracy(pred, target, weights, thr=0.25).item() == pytest.approx(1.0)
    assert pck_accuracy(pred, target, torch.zeros(1, 4)).item() == 0.0


@pytest.mark.parametrize('kind', ['l2', 'smooth_l1'])
def test_unlabelled_nan_targets_leave_the_gradient_finite(kind):
    """A NaN label at a joint of weight 0 would give 0 * NaN in the backward pass of every loss but L1."""
    from ipr_plugin.ops import mask_unweighted_targets
    pred = torch.rand(2, 3, 2, requires_grad=True)
    target = torch.rand(2, 3, 2)
    target[1, 2] = float('nan')
    weights = torch.ones(2, 3)
    weights[1, 2] = 0
    masked = mask_unweighted_targets(target, pred, weights)
    assert torch.equal(masked[0], target[0]) and torch.equal(masked[1, 2], pred[1, 2].detach())
    weighted_joint_mean(coordinate_loss(pred, masked, kind), weights).backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[1, 2] == 0).all()
    pred.grad = None
    weighted_joint_mean(coordinate_loss(pred, target, kind), weights).backward()  # unmasked: the NaN gets through
    assert not torch.isfinite(pred.grad).all()
    assert mask_unweighted_targets(target, pred, None) is target


def _joint_inputs(seed: int = 0):
    """Predicted coordinates off the labels, and predicted maps that are neither Gaussian at the labels nor at
    the predictions (softmax of random logits), with some joints unweighted."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(B, K, 2, generator=gen) - 0.5
    pred = target + 0.1 * torch.randn(B, K, 2, generator=gen)
    probs = torch.randn(B, K, H * W, generator=gen).softmax(-1).view(B, K, H, W)
    weights = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 1, 1, 1]], dtype=torch.float32)
    return pred, target, probs, weights


def test_the_regulariser_pulls_the_maps_to_the_labels_not_to_the_predictions():
    """A Gaussian at the label is the minimum wherever the coordinates point; one at the prediction is not."""
    from ipr_plugin.ops.targets import js_divergence
    loss = MODELS.build(dict(type='IntegralJointLoss', sigma=1.5))
    pred, target, _, weights = _joint_inputs()
    at_label = gaussian_heatmaps(target, *grids(), sigma=1.5)
    at_pred = gaussian_heatmaps(pred, *grids(), sigma=1.5)
    out = loss(pred, target, weights, heatmaps=at_label, grids=grids())
    assert out['loss_hm'].item() == pytest.approx(0, abs=1e-5) and out['loss_coord'].item() > 0.01
    expected = weighted_joint_mean(js_divergence(at_pred, at_label), weights)
    assert loss(pred, target, weights, heatmaps=at_pred, grids=grids())['loss_hm'].item() == pytest.approx(
        expected.item(), rel=1e-5) and expected.item() > 0.01


@pytest.mark.parametrize('regularizer', ['js', 'kl', 'var'])
@pytest.mark.parametrize('sigma', [1.0, 2.5])
def test_each_regulariser_and_sigma_is_the_ops_function_on_the_same_inputs(regularizer, sigma):
    from ipr_plugin.ops import soft_argmax
    from ipr_plugin.ops.targets import js_divergence, kl_divergence, variance_regularizer
    pred, target, probs, weights = _joint_inputs(1)
    grid_x, grid_y = grids()
    if regularizer == 'var':
        per_joint = variance_regularizer(probs, soft_argmax(probs, grid_x, grid_y), grid_x, grid_y, sigma)
    else:
        divergence = js_divergence if regularizer == 'js' else kl_divergence
        per_joint = divergence(probs, gaussian_heatmaps(target, grid_x, grid_y, sigma))
    loss = MODELS.build(dict(type='IntegralJointLoss', regularizer=regularizer, sigma=sigma))
    value = loss(pred, target, weights, heatmaps=probs, grids=grids())['loss_hm'].item()
    assert value == pytest.approx(weighted_joint_mean(per_joint, weights).item(), rel=1e-5)


@pytest.mark.parametrize('kind', ['l1', 'smooth_l1', 'l2', 'euclidean'])
def test_the_coordinate_term_is_the_chosen_coordinate_loss(kind):
    pred, target, probs, weights = _joint_inputs(2)
    loss = MODELS.build(dict(type='IntegralJointLoss', coord_loss=kind))
    expected = weighted_joint_mean(coordinate_loss(pred, target, kind), weights)
    value = loss(pred, target, weights, heatmaps=probs, grids=grids())['loss_coord'].item()
    assert value == pytest.approx(expected.item(), rel=1e-6)


def test_the_weights_scale_their_terms_and_annealing_scales_the_regulariser_in_forward():
    pred, target, probs, weights = _joint_inputs(3)
    kwargs = dict(heatmaps=probs, grids=grids())
    plain = MODELS.build(dict(type='IntegralJointLoss'))(pred, target, weights, **kwargs)
    weighted = MODELS.build(dict(type='IntegralJointLoss', coord_weight=3.0, reg_weight=2.0))(
        pred, target, weights, **kwargs)
    assert weighted['loss_coord'].item() == pytest.approx(3 * plain['loss_coord'].item(), rel=1e-6)
    assert weighted['loss_hm'].item() == pytest.approx(2 * plain['loss_hm'].item(), rel=1e-6)
    l1 = MODELS.build(dict(type='IntegralL1Loss'))(pred, target, weights)['loss_kpt']
    assert MODELS.build(dict(type='IntegralL1Loss', loss_weight=2.0))(pred, target, weights)['loss_kpt'].item() \
        == pytest.approx(2 * l1.item(), rel=1e-6)
    # halfway through a linear anneal (the MessageHub a Runner keeps current), half the regulariser
    hub = MessageHub.get_instance('ipr_test_anneal_forward')
    hub.update_info('iter', 50)
    hub.update_info('max_iters', 100)
    annealed = MODELS.build(dict(type='IntegralJointLoss', anneal=dict(mode='linear', by='iter')))
    out = annealed(pred, target, weights, **kwargs)
    assert out['loss_hm'].item() == pytest.approx(0.5 * plain['loss_hm'].item(), rel=1e-6)
    assert out['loss_coord'].item() == pytest.approx(plain['loss_coord'].item(), rel=1e-6)


def test_a_loss_name_mmengine_would_not_optimise_is_refused():
    with pytest.raises(ValueError, match='`loss_name` must contain "loss" for mmengine to optimise it, got .kpt.'):
        MODELS.build(dict(type='IntegralL1Loss', loss_name='kpt'))
    assert set(MODELS.build(dict(type='IntegralL1Loss', loss_name='loss_xy'))(*_joint_inputs()[:2])) == {'loss_xy'}


def test_l1_names_what_mmposes_heads_pass_it():
    """DSNTHead passes [coords, heatmaps] lists, RegressionHead (B, K, 1) weights: refused by name, with the loss
    to use there."""
    loss = MODELS.build(dict(type='IntegralL1Loss'))
    pred, target = torch.rand(B, K, 2), torch.rand(B, K, 2)
    with pytest.raises(ValueError, match=r"takes \(B, K, 2\) coordinates .*; got list and None. In mmpose's own "
                                         r"heads use mmpose's L1Loss"):
        loss([pred, torch.rand(B, K, H, W)], [target, torch.rand(B, K, H, W)])
    with pytest.raises(ValueError, match=rf'got \({B}, {K}, 2\) and \({B}, {K}, 1\)'):
        loss(pred, target, torch.ones(B, K, 1))


def test_without_weights_the_losses_average_over_all_joints():
    torch.manual_seed(0)
    pred, target = torch.rand(B, K, 2) - 0.5, torch.rand(B, K, 2) - 0.5
    expected = (pred - target).abs().sum(-1).mean()
    assert MODELS.build(dict(type='IntegralL1Loss'))(pred, target)['loss_kpt'].item() == pytest.approx(
        expected.item(), rel=1e-6)
    probs = gaussian_heatmaps(target, *grids(), sigma=1.0)
    out = MODELS.build(dict(type='IntegralJointLoss'))(pred, target, heatmaps=probs, grids=grids())
    assert out['loss_coord'].item() == pytest.approx(expected.item(), rel=1e-6)


def test_pck_uses_the_euclidean_distance():
    target = torch.zeros(1, 2, 2)
    pred = torch.tensor([[[0.06, 0.06], [0.08, 0.08]]])  # |d| = 0.085 (hit), 0.113 (miss); L1 0.12, 0.16
    assert pck_accuracy(pred, target, torch.ones(1, 2)).item() == pytest.approx(0.5)


def test_annealing_outside_a_runner_keeps_the_full_weight():
    """No max_iters / max_epochs in the MessageHub (no Runner): nothing says when training ends."""
    hub = MessageHub.get_instance('ipr_proposed_no_runner')
    hub.update_info('iter', 10)
    loss = MODELS.build(dict(type='IntegralJointLoss', reg_weight=2.0, anneal=dict(by='iter')))
    assert loss.current_reg_weight() == 2.0


def test_annealing_defaults_are_linear_by_epoch():
    hub = MessageHub.get_instance('ipr_proposed_anneal_defaults')
    hub.update_info('epoch', 1)
    hub.update_info('max_epochs', 4)
    hub.update_info('iter', 0)
    hub.update_info('max_iters', 1000)
    loss = MODELS.build(dict(type='IntegralJointLoss', anneal=dict()))
    assert loss.current_reg_weight() == pytest.approx(0.75)  # cosine: 0.854; by iter: 1.0


def test_annealing_starts_at_begin():
    hub = MessageHub.get_instance('ipr_proposed_anneal_begin')
    loss = MODELS.build(dict(type='IntegralJointLoss', anneal=dict(by='iter', begin=20, end=60)))
    for it, expected in ((10, 1.0), (20, 1.0), (40, 0.5), (60, 0.0)):
        hub.update_info('iter', it)
        assert loss.current_reg_weight() == pytest.approx(expected), it


def test_joint_loss_default_sigma_is_one_cell():
    torch.manual_seed(0)
    pred, target = torch.rand(B, K, 2) - 0.5, torch.rand(B, K, 2) - 0.5
    probs = torch.softmax(torch.randn(B, K, H * W), -1).view(B, K, H, W)
    kwargs = dict(heatmaps=probs, grids=grids())
    default = MODELS.build(dict(type='IntegralJointLoss'))(pred, target, **kwargs)['loss_hm']
    explicit = MODELS.build(dict(type='IntegralJointLoss', sigma=1.0))(pred, target, **kwargs)['loss_hm']
    assert default.item() == explicit.item()


def test_an_empty_batch_without_weights_gives_zero_not_nan():
    """The documented 0 for no weighted joint held only with weights given: without them an empty mean was NaN."""
    assert weighted_joint_mean(torch.zeros(0, 17), None).item() == 0.0
    loss = MODELS.build(dict(type='IntegralL1Loss'))
    assert loss(torch.zeros(0, 3, 2), torch.zeros(0, 3, 2))['loss_kpt'].item() == 0.0


def test_pck_and_target_masking_name_shapes_that_do_not_match():
    with pytest.raises(ValueError, match=r'pck_accuracy: `pred` \(2, 4, 2\) and `target` \(2, 3, 2\)'):
        pck_accuracy(torch.zeros(2, 4, 2), torch.zeros(2, 3, 2), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r'`weights` \(2, 4, 1\) \(B, K\)'):
        pck_accuracy(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2), torch.ones(2, 4, 1))
    from ipr_plugin.ops.losses import mask_unweighted_targets
    with pytest.raises(ValueError, match=r'`pred` \(2, 3, 2\) must have the shape of `target` \(2, 4, 2\)'):
        mask_unweighted_targets(torch.zeros(2, 4, 2), torch.zeros(2, 3, 2), torch.ones(2, 4))

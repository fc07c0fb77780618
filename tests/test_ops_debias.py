"""Debias and the background share (ipr_plugin.ops.integral): exactness, caps, gradients, bad input."""
import pytest
import torch
from torch.autograd import gradcheck

from maps import H, W, cells_to_normalized, grids, peak_logits
from ipr_plugin.ops import (background_share, debias_coords, debias_from_share, log_background_share, make_grid,
                            normalize_heatmaps, soft_argmax)


@pytest.mark.parametrize('mode', ['center', 'mmpose'])
def test_debias_recovers_peak_location(mode):
    gx = make_grid(W, mode=mode, input_size=4 * W, dtype=torch.float64)
    gy = make_grid(H, mode=mode, input_size=4 * H, dtype=torch.float64)
    cx, cy = 8.3, 15.6
    logits = peak_logits(cx, cy)
    target = torch.stack((gx[0] + cx * (gx[1] - gx[0]), gy[0] + cy * (gy[1] - gy[0])))
    cell = torch.tensor([2 / W, 2 / H], dtype=torch.float64)
    raw = soft_argmax(normalize_heatmaps(logits), gx, gy)
    fixed = debias_coords(raw, logits, 1.0, gx, gy)
    # Plain soft-argmax is pulled towards the grid mean by several cells ...
    centre = torch.stack((gx.mean(), gy.mean()))
    assert (((raw - target) / cell).abs() > 1.0).all()
    assert ((raw - centre).abs() < (target - centre).abs()).all()
    # ... debias removes that to well within 0.05 cell.
    assert (((fixed - target) / cell).abs() < 0.05).all()


def test_debias_float32_and_tensor_beta():
    gx, gy = grids()
    logits = (peak_logits(20.4, 5.2, amp=2.5) / 0.5).float()  # peak 5 at beta = 0.5
    beta = torch.tensor(0.5)
    raw = soft_argmax(normalize_heatmaps(logits, beta=beta), gx, gy)
    fixed = debias_coords(raw, logits, beta, gx, gy)
    target = cells_to_normalized(20.4, 5.2).float()
    assert fixed.dtype == torch.float32
    assert ((fixed - target).abs() / torch.tensor([2 / W, 2 / H]) < 0.05).all()


@pytest.mark.parametrize('fill', [0.0, 1e4, -1e4])
def test_debias_finite_everywhere(fill):
    gx, gy = grids()
    logits = torch.full((2, H, W), fill)
    logits[1, 4, 9] = 1e4  # a single huge logit
    logits.requires_grad_(True)
    beta = torch.tensor(100.0, requires_grad=True)
    coords = soft_argmax(normalize_heatmaps(logits, beta=beta), gx, gy)
    fixed = debias_coords(coords, logits, beta, gx, gy)
    assert torch.isfinite(fixed).all()
    fixed.sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(beta.grad).all()
    if fill == 0.0:  # uniform map, guarded denominator: stays at the grid centre up to rounding / eps
        assert fixed[0].abs().max() < 0.1


def test_debias_on_flat_maps_amplifies_boundedly_and_keeps_gradients():
    """Freshly initialised logits (all near 0, r near 1): the correction must neither throw keypoints to the
    map's edge nor cut their gradients (training from scratch stalled there)."""
    gx, gy = grids()
    torch.manual_seed(0)
    logits = (torch.randn(64, H, W) * 5e-3).requires_grad_(True)  # what a new ResNet head produces
    coords = soft_argmax(normalize_heatmaps(logits, beta=10.0), gx, gy)
    fixed = debias_coords(coords, logits, 10.0, gx, gy)
    centre = torch.stack((gx.mean(), gy.mean()))
    # at most 1 / (1 - max_background) = 10x the soft-argmax offset, and never past the outer cell centres
    assert ((fixed - centre).abs() <= 10 * (coords - centre).abs() + 1e-6).all()
    assert (fixed[..., 0] >= gx[0]).all() and (fixed[..., 0] <= gx[-1]).all()
    # every keypoint still gets a gradient from a coordinate loss
    target = torch.rand(64, 2) - 0.5
    (fixed - target).abs().sum().backward()
    assert (logits.grad.flatten(1).abs().sum(1) > 0).all()
    # the bound this cap replaced (1 - r >= 1e-6) left at least a quarter of the same keypoints without one
    logits.grad = None
    coords = soft_argmax(normalize_heatmaps(logits, beta=10.0), gx, gy)
    old = debias_coords(coords, logits, 10.0, gx, gy, max_background=1 - 1e-6)
    (old - target).abs().sum().backward()
    assert (logits.grad.flatten(1).abs().sum(1) == 0).sum() >= 16


def test_background_share_zero_and_median():
    """On a peak over a background of exactly 0 both levels agree; shifting every logit moves only 'zero'."""
    logits = peak_logits(8.3, 15.6)
    zero, median = background_share(logits, 1.0), background_share(logits, 1.0, 'median')
    # r = HW / sum exp(z): the background's share of the mass, below 1 with a peak
    torch.testing.assert_close(zero, H * W / logits.exp().sum())
    assert 0.2 < float(zero) < 1.0 and abs(float(median) - float(zero)) < 1e-3 * float(zero)
    shifted = logits - 1.0
    assert float(background_share(shifted, 1.0)) > 1.0  # the paper's model: "background holds > all mass"
    torch.testing.assert_close(background_share(shifted, 1.0, 'median'), median)
    assert background_share(torch.zeros(3, 4, H, W), 2.0, 'median').shape == (3, 4)
    with pytest.raises(ValueError, match='background'):
        background_share(logits, 1.0, 'mean')


@pytest.mark.parametrize('level', [-2.0, 0.0, 3.0])
def test_debias_median_recovers_peak_on_any_background_level(level):
    """With the level measured, debias is as exact on a background at -2 or 3 as on one at 0; the paper's
    level-0 model is off by cells there (pinned to the cap below 0, over-shooting above)."""
    gx, gy = grids(dtype=torch.float64)
    cx, cy = 8.3, 15.6
    logits = peak_logits(cx, cy) + level
    raw = soft_argmax(normalize_heatmaps(logits), gx, gy)
    target = cells_to_normalized(cx, cy)
    cell = torch.tensor([2 / W, 2 / H], dtype=torch.float64)
    fixed = debias_coords(raw, logits, 1.0, gx, gy, background='median')
    assert (((fixed - target) / cell).abs() < 0.05).all()
    paper = debias_coords(raw, logits, 1.0, gx, gy)
    if level != 0.0:
        assert (((paper - target) / cell).abs() > 0.5).any()


def test_gradcheck_debias_median():
    gx, gy = make_grid(5, dtype=torch.float64), make_grid(4, dtype=torch.float64)
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    logits[:, 1, 2] += 4
    logits.requires_grad_(True)
    coords = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda c, z: debias_coords(c, z, 1.3, gx, gy, background='median'), (coords, logits))
    # the gradient is as blind to a common shift of the logits as the value: it sums to 0 over each map
    z = logits.detach().clone().requires_grad_(True)
    debias_coords(coords.detach(), z, 1.3, gx, gy, background='median').sum().backward()
    torch.testing.assert_close(z.grad.sum((-2, -1)), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)


def test_debias_max_background_bounds():
    gx, gy = grids()
    with pytest.raises(ValueError, match='max_background'):
        debias_coords(torch.zeros(4, 2), torch.zeros(4, H, W), 1.0, gx, gy, max_background=1.0)


def test_debias_bad_coords_raise():
    gx, gy = grids()
    with pytest.raises(ValueError, match=r'coords.*\(4, 3\)'):
        debias_coords(torch.zeros(4, 3), torch.zeros(4, H, W), 1.0, gx, gy)



@pytest.mark.parametrize('background', ['zero', 'median'])
def test_debias_from_share_is_debias_coords_split(background):
    """The head computes log r once and corrects with it: the same coordinates and gradients as debias_coords."""
    gx, gy = make_grid(5, dtype=torch.float64), make_grid(4, dtype=torch.float64)
    logits = (torch.randn(3, 2, 4, 5, dtype=torch.float64) * 2).requires_grad_(True)
    coords = soft_argmax(normalize_heatmaps(logits, beta=1.7), gx, gy)
    whole = debias_coords(coords, logits, 1.7, gx, gy, 0.8, background)
    log_r = log_background_share(logits, 1.7, background)
    split = debias_from_share(coords, log_r, gx, gy, 0.8)
    torch.testing.assert_close(split, whole, atol=0, rtol=0)
    torch.testing.assert_close(log_r.exp(), background_share(logits, 1.7, background), atol=0, rtol=0)
    g_whole, = torch.autograd.grad(whole.sum(), logits, retain_graph=True)  # coords is shared
    g_split, = torch.autograd.grad(split.sum(), logits)
    torch.testing.assert_close(g_split, g_whole, atol=0, rtol=0)


def test_log_background_share_finite_where_share_overflows():
    """Maps far below the background level (unlabelled keypoints can get there): r = inf, log r finite."""
    logits = torch.full((2, H, W), -200.0)
    assert torch.isinf(background_share(logits, 1.0)).all()
    torch.testing.assert_close(log_background_share(logits, 1.0), torch.full((2, ), 200.0))
    gx, gy = grids()
    capped = debias_from_share(torch.full((2, 2), 0.1), log_background_share(logits, 1.0), gx, gy, 0.9)
    # capped at r = 0.9: the offset 0.1 from the grid mean is amplified 10x, then clamped to the last cell centre
    torch.testing.assert_close(capped, torch.stack((gx.max(), gy.max())).expand(2, 2))


@pytest.mark.parametrize('background', ['zero', 'median'])
def test_debias_gradients_finite_with_an_infinite_logit(background):
    """An infinite logit (a float16 convolution overflowing under autocast), or a finite one whose product with
    beta overflows: finite coordinates and finite gradients, as without the correction."""
    gx, gy = grids()
    for value, beta_value in ((float('inf'), 1.0), (float('-inf'), 1.0), (1e38, 10.0)):
        logits = torch.randn(2, H, W)
        logits[0, 3, 4] = value
        logits.requires_grad_(True)
        beta = torch.tensor(beta_value, requires_grad=True)  # learnt, as with learnable_beta
        coords = soft_argmax(normalize_heatmaps(logits, beta=beta), gx, gy)
        debiased = debias_from_share(coords, log_background_share(logits, beta, background), gx, gy)
        debiased.sum().backward()
        assert torch.isfinite(debiased).all() and torch.isfinite(logits.grad).all(), (value, beta_value)
        assert torch.isfinite(beta.grad), (value, beta_value)


def test_debias_from_share_bad_input_raises():
    gx, gy = grids()
    with pytest.raises(ValueError, match=r'log_share.*\(4,\).*\(3,\)'):
        debias_from_share(torch.zeros(4, 2), torch.zeros(3), gx, gy)
    with pytest.raises(ValueError, match='max_background'):
        debias_from_share(torch.zeros(4, 2), torch.zeros(4), gx, gy, max_background=0.0)
    with pytest.raises(ValueError, match='background'):
        log_background_share(torch.zeros(4, H, W), 1.0, 'mean')


def test_gradcheck_debias():
    gx, gy = make_grid(5, dtype=torch.float64), make_grid(4, dtype=torch.float64)
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    logits[:, 1, 2] += 4  # C > HW: away from the guard
    logits.requires_grad_(True)
    beta = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)

    def full(z, b):
        return debias_coords(soft_argmax(normalize_heatmaps(z, beta=b), gx, gy), z, b, gx, gy)

    coords = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(full, (logits, beta))
    assert gradcheck(lambda c, z, b: debias_coords(c, z, b, gx, gy), (coords, logits, beta))


def test_a_capped_keypoint_beyond_the_range_has_a_gradient_only_unclamped():
    """A mostly flat map whose soft-argmax sits 0.15 right of the centre: r is above the cap of 0.9, the
    amplified x passes the last cell centre, and the clamp leaves no gradient; the unclamped value keeps one."""
    grid = make_grid(64)
    grads = {}
    for clamp in (True, False):
        logits = (torch.linspace(-1, 1, 64) * 0.45).expand(64, 64).clone()[None, None].requires_grad_()
        coords = soft_argmax(normalize_heatmaps(logits), grid, grid)
        debiased = debias_from_share(coords, log_background_share(logits, 1.0), grid, grid, clamp=clamp)
        (debiased - torch.tensor([[[0.5, 0.0]]])).abs().sum().backward()
        grads[clamp] = logits.grad.abs().max().item()
    assert background_share(logits, 1.0).item() > 0.9 and 0.1 < coords[0, 0, 0].item() < 0.2
    assert grads[True] == 0.0 and grads[False] > 1e-4


@pytest.mark.parametrize('corner', ['top_left', 'bottom_right'])
def test_debias_clamps_each_axis_to_its_own_cell_centre_range(corner):
    """On a non-square map (W = 32, H = 24) a capped keypoint amplified past the first/last cell centre lands on
    that axis's own first/last centre: -1 + 1/W in x but -1 + 1/H in y."""
    gx, gy = grids()
    assert H != W
    sign = -1.0 if corner == 'top_left' else 1.0
    logits = (sign * 0.45 * (gx + gy[:, None])).expand(2, H, W)
    raw = soft_argmax(normalize_heatmaps(logits), gx, gy)
    fixed = debias_coords(raw, logits, 1.0, gx, gy)
    if corner == 'top_left':
        expected = torch.stack((gx[0], gy[0]))
    else:
        expected = torch.stack((gx[-1], gy[-1]))
    torch.testing.assert_close(fixed, expected.expand(2, 2), rtol=0, atol=1e-7)

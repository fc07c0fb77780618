"""Soft-argmax, normalisers, debias and scores (ipr_plugin.ops.integral)."""
import math

import pytest
import torch
from torch.autograd import gradcheck

from ipr_plugin.ops import (background_share, debias_coords, debias_from_share, keypoint_scores,
                            log_background_share, make_grid,
                            normalize_heatmaps, pixel_to_normalized, soft_argmax)

METHODS = ('softmax', 'relu', 'abs')
H, W = 24, 32


def _grids(h=H, w=W, dtype=torch.float32):
    return make_grid(w, dtype=dtype), make_grid(h, dtype=dtype)


def _peak_logits(cx, cy, h=H, w=W, amp=5.0, s=2.0, dtype=torch.float64):
    """Gaussian-shaped peak of height ``amp`` at cell coordinates (cx, cy) on a background of exactly 0."""
    y = torch.arange(h, dtype=dtype).unsqueeze(-1)
    x = torch.arange(w, dtype=dtype)
    return amp * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))


def _cells_to_normalized(cx, cy, h=H, w=W):
    return torch.tensor([(2 * cx + 1) / w - 1, (2 * cy + 1) / h - 1], dtype=torch.float64)


# ------------------------------------------------------------------------------------------------- grids
def test_make_grid_center():
    g = make_grid(4)
    assert g.dtype == torch.float32 and g.shape == (4,)
    assert torch.allclose(g, torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert abs(float(make_grid(W).mean())) < 1e-6
    assert make_grid(5, dtype=torch.float64).dtype == torch.float64


def test_make_grid_mmpose():
    w_in = 192
    g = make_grid(W, mode='mmpose', input_size=w_in, dtype=torch.float64)
    j = torch.arange(W, dtype=torch.float64)
    assert torch.allclose(g, 2 * (j / W) - 1 + 1 / w_in, atol=1e-12)
    # mmpose decodes x = e * w with e = j / W; that pixel maps to g_j in our convention.
    x = (j / W * w_in).unsqueeze(-1).expand(W, 2)
    assert torch.allclose(pixel_to_normalized(x, (w_in, w_in))[:, 0], g, atol=1e-12)
    # mmpose's flip e' = 1 - e - 1/w is u -> -u.
    e_flip = 1 - j / W - 1 / w_in
    x_flip = (e_flip * w_in).unsqueeze(-1).expand(W, 2)
    assert torch.allclose(pixel_to_normalized(x_flip, (w_in, w_in))[:, 0], -g, atol=1e-12)


def test_make_grid_bad_arguments():
    with pytest.raises(ValueError, match='mode'):
        make_grid(8, mode='centre')
    with pytest.raises(ValueError, match='input_size'):
        make_grid(8, mode='mmpose')
    with pytest.raises(ValueError, match='size'):
        make_grid(0)


# ------------------------------------------------------------------------------------------- normalisers
@pytest.mark.parametrize('method', METHODS)
def test_normalize_sums_to_one(method):
    logits = torch.randn(2, 3, H, W)
    p = normalize_heatmaps(logits, method=method, beta=2.0)
    assert p.shape == logits.shape and p.dtype == torch.float32
    assert (p >= 0).all()
    assert torch.allclose(p.sum(dim=(-2, -1)), torch.ones(2, 3), atol=1e-5)


def test_beta_scaling():
    logits = torch.randn(3, H, W)
    assert torch.allclose(normalize_heatmaps(logits, beta=3.0), normalize_heatmaps(3 * logits), atol=1e-6)
    sharper = normalize_heatmaps(logits, beta=10.0).amax(dim=(-2, -1))
    assert (sharper > normalize_heatmaps(logits).amax(dim=(-2, -1))).all()
    # Tensor beta per keypoint broadcasts and equals the float result keypoint by keypoint.
    beta = torch.tensor([1.0, 2.0, 4.0]).view(3, 1, 1)
    p = normalize_heatmaps(logits, beta=beta)
    for k in range(3):
        assert torch.allclose(p[k], normalize_heatmaps(logits[k], beta=float(beta[k])), atol=1e-6)
    # relu/abs are scale invariant (up to eps).
    for method in ('relu', 'abs'):
        assert torch.allclose(normalize_heatmaps(logits, method, beta=5.0), normalize_heatmaps(logits, method),
                              atol=1e-6)


@pytest.mark.parametrize('method', ['relu', 'abs'])
def test_uniform_fallback_when_all_zero(method):
    logits = torch.zeros(2, H, W)
    if method == 'relu':
        logits[1] = -torch.rand(H, W) - 0.1  # all negative: relu is 0 everywhere too
    p = normalize_heatmaps(logits, method=method)
    assert torch.isfinite(p).all()
    assert torch.allclose(p, torch.full_like(p, 1 / (H * W)), rtol=1e-6, atol=0)


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('magnitude', [1e4, -1e4])
def test_extreme_logits_are_finite(method, magnitude):
    logits = torch.randn(2, H, W)
    logits[:, 3, 5] = magnitude
    logits[1] = magnitude  # also a constant extreme map
    logits.requires_grad_(True)
    beta = torch.tensor(100.0, requires_grad=True)
    p = normalize_heatmaps(logits, method=method, beta=beta)
    assert torch.isfinite(p).all()
    assert torch.allclose(p.sum(dim=(-2, -1)), torch.ones(2), atol=1e-5)
    coords = soft_argmax(p, *_grids())
    coords.sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(beta.grad).all()


def test_bad_normalizer_arguments():
    with pytest.raises(ValueError, match='method'):
        normalize_heatmaps(torch.zeros(H, W), method='sofmax')
    with pytest.raises(ValueError, match=r'logits.*\(5,\)'):
        normalize_heatmaps(torch.zeros(5))
    with pytest.raises(ValueError, match='eps'):
        normalize_heatmaps(torch.zeros(H, W), method='relu', eps=0.0)


# ------------------------------------------------------------------------------------------- soft-argmax
@pytest.mark.parametrize('mode', ['center', 'mmpose'])
def test_one_hot_returns_cell_centre_exactly(mode):
    gx = make_grid(W, mode=mode, input_size=4 * W)
    gy = make_grid(H, mode=mode, input_size=4 * H)
    for (j, i) in [(0, 0), (W - 1, H - 1), (7, 11)]:
        p = torch.zeros(H, W)
        p[i, j] = 1
        assert torch.equal(soft_argmax(p, gx, gy), torch.stack((gx[j], gy[i])))
    if mode == 'center':  # the right/bottom edge cell is reachable
        p = torch.zeros(H, W)
        p[-1, -1] = 1
        assert torch.allclose(soft_argmax(p, gx, gy), torch.tensor([1 - 1 / W, 1 - 1 / H]))


def test_soft_argmax_is_separable():
    gx, gy = _grids(dtype=torch.float64)
    px = torch.softmax(torch.randn(W, dtype=torch.float64), 0)
    py = torch.softmax(torch.randn(H, dtype=torch.float64), 0)
    coords = soft_argmax(py.unsqueeze(-1) * px, gx, gy)
    assert torch.allclose(coords, torch.stack(((px * gx).sum(), (py * gy).sum())), atol=1e-12)
    # x only depends on the column marginal: moving mass within a column keeps x.
    p = torch.softmax(torch.randn(H * W, dtype=torch.float64), 0).view(H, W)
    q = p.flip(0)
    assert torch.allclose(soft_argmax(p, gx, gy)[0], soft_argmax(q, gx, gy)[0], atol=1e-12)


def test_soft_argmax_batch_shape():
    p = normalize_heatmaps(torch.randn(2, 5, H, W))
    assert soft_argmax(p, *_grids()).shape == (2, 5, 2)


def test_grid_mismatch_raises():
    gx, gy = _grids()
    p = torch.rand(H, W)
    with pytest.raises(ValueError, match=rf'grid_x.*\({W + 1},\)'):
        soft_argmax(p, make_grid(W + 1), gy)
    with pytest.raises(ValueError, match=rf'grid_y.*\({H - 1},\)'):
        soft_argmax(p, gx, make_grid(H - 1))
    with pytest.raises(ValueError, match=rf'grid_x.*\({H},\)'):  # swapped grids
        keypoint_scores(p, torch.zeros(2), gy, gx)


# ------------------------------------------------------------------------------------------------ debias
@pytest.mark.parametrize('mode', ['center', 'mmpose'])
def test_debias_recovers_peak_location(mode):
    gx = make_grid(W, mode=mode, input_size=4 * W, dtype=torch.float64)
    gy = make_grid(H, mode=mode, input_size=4 * H, dtype=torch.float64)
    cx, cy = 8.3, 15.6
    logits = _peak_logits(cx, cy)
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
    gx, gy = _grids()
    logits = (_peak_logits(20.4, 5.2, amp=2.5) / 0.5).float()  # peak 5 at beta = 0.5
    beta = torch.tensor(0.5)
    raw = soft_argmax(normalize_heatmaps(logits, beta=beta), gx, gy)
    fixed = debias_coords(raw, logits, beta, gx, gy)
    target = _cells_to_normalized(20.4, 5.2).float()
    assert fixed.dtype == torch.float32
    assert ((fixed - target).abs() / torch.tensor([2 / W, 2 / H]) < 0.05).all()


@pytest.mark.parametrize('fill', [0.0, 1e4, -1e4])
def test_debias_finite_everywhere(fill):
    gx, gy = _grids()
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
    gx, gy = _grids()
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
    logits = _peak_logits(8.3, 15.6)
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
    gx, gy = _grids(dtype=torch.float64)
    cx, cy = 8.3, 15.6
    logits = _peak_logits(cx, cy) + level
    raw = soft_argmax(normalize_heatmaps(logits), gx, gy)
    target = _cells_to_normalized(cx, cy)
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
    gx, gy = _grids()
    with pytest.raises(ValueError, match='max_background'):
        debias_coords(torch.zeros(4, 2), torch.zeros(4, H, W), 1.0, gx, gy, max_background=1.0)


def test_debias_bad_coords_raise():
    gx, gy = _grids()
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
    gx, gy = _grids()
    capped = debias_from_share(torch.full((2, 2), 0.1), log_background_share(logits, 1.0), gx, gy, 0.9)
    # capped at r = 0.9: the offset 0.1 from the grid mean is amplified 10x, then clamped to the last cell centre
    torch.testing.assert_close(capped, torch.stack((gx.max(), gy.max())).expand(2, 2))


def test_debias_from_share_bad_input_raises():
    gx, gy = _grids()
    with pytest.raises(ValueError, match=r'log_share.*\(4,\).*\(3,\)'):
        debias_from_share(torch.zeros(4, 2), torch.zeros(3), gx, gy)
    with pytest.raises(ValueError, match='max_background'):
        debias_from_share(torch.zeros(4, 2), torch.zeros(4), gx, gy, max_background=0.0)
    with pytest.raises(ValueError, match='background'):
        log_background_share(torch.zeros(4, H, W), 1.0, 'mean')


# ------------------------------------------------------------------------------------------------ scores
def test_keypoint_scores():
    h, w = 64, 48
    gx, gy = make_grid(w), make_grid(h)
    probs = normalize_heatmaps(torch.randn(3, 4, h, w) * 3)
    scores = keypoint_scores(probs, soft_argmax(probs, gx, gy), gx, gy)
    assert scores.shape == (3, 4) and scores.dtype == torch.float32
    assert ((scores >= 0) & (scores <= 1)).all()

    sharp = torch.zeros(h, w)
    sharp[40, 10] = 1
    at = torch.stack((gx[10], gy[40]))
    assert keypoint_scores(sharp, at, gx, gy) > 0.999
    assert keypoint_scores(sharp, at + torch.tensor([10 * 2 / w, 0.0]), gx, gy) < 1e-6  # 10 cells away

    uniform = torch.full((h, w), 1 / (h * w))
    centre = torch.stack((gx[20], gy[30]))
    for r in (2.0, 5.0):
        expected = math.pi * r * r / (h * w)
        assert abs(float(keypoint_scores(uniform, centre, gx, gy, radius=r)) - expected) < 0.1 * expected


# -------------------------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize('method', METHODS)
def test_gradcheck_normalize(method):
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    logits = logits + 0.2 * logits.sign()  # keep relu/abs away from their kink at 0
    logits.requires_grad_(True)
    beta = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda z, b: normalize_heatmaps(z, method, b), (logits, beta))


def test_gradcheck_soft_argmax():
    probs = torch.rand(2, 4, 5, dtype=torch.float64, requires_grad=True)
    gx, gy = make_grid(5, dtype=torch.float64), make_grid(4, dtype=torch.float64)
    assert gradcheck(lambda p: soft_argmax(p, gx, gy), (probs,))


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


# --------------------------------------------------------------------------------------------- autocast
def test_autocast_bf16_outputs_float32():
    """bf16 inputs (or float32 ones) under bf16 autocast give float32 results matching float32 math."""
    gx, gy = _grids()
    logits = _peak_logits(11.2, 7.7, amp=6.0, dtype=torch.float32).expand(2, H, W).clone()
    logits = (logits + 0.1 * torch.randn_like(logits)).bfloat16()
    ref_logits = logits.float()
    with torch.no_grad():
        ref = {method: normalize_heatmaps(ref_logits, method, beta=2.0) for method in METHODS}
        coords_bf16 = soft_argmax(ref['softmax'], gx, gy).bfloat16()
        ref_c = soft_argmax(ref['softmax'].bfloat16().float(), gx, gy)
        ref_d = debias_coords(coords_bf16.float(), ref_logits, 2.0, gx, gy)
        ref_s = keypoint_scores(ref['softmax'], ref_d, gx, gy)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            for method in METHODS:
                for z in (logits, ref_logits):
                    p = normalize_heatmaps(z, method, beta=2.0)
                    assert p.dtype == torch.float32 and torch.isfinite(p).all()
                    assert (p - ref[method]).abs().max() < 1e-3
            c = soft_argmax(ref['softmax'].bfloat16(), gx.bfloat16(), gy.bfloat16())  # grids exact in bf16
            d = debias_coords(coords_bf16, logits, torch.tensor(2.0, dtype=torch.bfloat16), gx, gy)
            s = keypoint_scores(ref['softmax'], d, gx, gy)
        for out, expected in ((c, ref_c), (d, ref_d), (s, ref_s)):
            assert out.dtype == torch.float32 and torch.isfinite(out).all()
            assert (out - expected).abs().max() < 1e-3

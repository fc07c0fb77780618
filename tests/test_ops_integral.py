"""Soft-argmax, normalisers and scores (ipr_plugin.ops.integral); debias is in test_ops_debias.py (here only the
median background's choice for an even count of cells)."""
import math

import pytest
import torch
from torch.autograd import gradcheck

from maps import H, W, grids, peak_logits
from ipr_plugin.ops import (background_share, debias_coords, keypoint_scores, log_background_share, make_grid,
                            normalize_heatmaps, pixel_to_normalized, soft_argmax)

METHODS = ('softmax', 'relu', 'abs')

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
    coords = soft_argmax(p, *grids())
    coords.sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(beta.grad).all()


def test_median_background_of_an_even_count_is_the_lower_median():
    """background_share's 'median' level (debias_background='median') is the lower of the two middle logits of a
    map with an even number of cells, as torch.median and the ONNX export's sort take it: r = HW exp(beta b) / C
    with b = 1 here, not the upper middle (2) or their mean (1.5)."""
    beta, logits = 1.5, torch.tensor([[0.0, 3.0], [2.0, 1.0]], dtype=torch.float64)
    expected = 4 * math.exp(beta * 1.0) / sum(math.exp(beta * z) for z in (0.0, 1.0, 2.0, 3.0))
    assert float(background_share(logits, beta, 'median')) == pytest.approx(expected, rel=1e-12)


def test_median_background_value_and_gradient_match_torch_median():
    """The median level is taken from a sort (ONNX and deterministic CUDA have no median): the same value as
    torch.median's, and the same gradient, on the one middle cell."""
    logits = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    ours = log_background_share(logits, 2.0, 'median')
    ours.sum().backward()
    grad, logits.grad = logits.grad.clone(), None
    scaled = 2.0 * logits
    direct = (math.log(20) - scaled.flatten(-2).logsumexp(-1) + scaled.flatten(-2).median(dim=-1).values)
    direct.sum().backward()
    assert torch.allclose(ours, direct, rtol=0, atol=1e-12)
    assert torch.allclose(grad, logits.grad, rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='torch.median raises under deterministic algorithms on '
                    'CUDA only')
def test_median_background_runs_under_deterministic_algorithms_on_cuda():
    """randomness=dict(deterministic=True) turns on torch.use_deterministic_algorithms, under which CUDA's
    torch.median (indices output) raises."""
    logits = torch.randn(2, 3, 8, 8, device='cuda')
    torch.use_deterministic_algorithms(True)
    try:
        share = background_share(logits, 10.0, 'median')
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.allclose(share.cpu(), background_share(logits.cpu(), 10.0, 'median'), atol=1e-5)


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
    gx, gy = grids(dtype=torch.float64)
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
    assert soft_argmax(p, *grids()).shape == (2, 5, 2)


def test_grid_mismatch_raises():
    gx, gy = grids()
    p = torch.rand(H, W)
    with pytest.raises(ValueError, match=rf'grid_x.*\({W + 1},\)'):
        soft_argmax(p, make_grid(W + 1), gy)
    with pytest.raises(ValueError, match=rf'grid_y.*\({H - 1},\)'):
        soft_argmax(p, gx, make_grid(H - 1))
    with pytest.raises(ValueError, match=rf'grid_x.*\({H},\)'):  # swapped grids
        keypoint_scores(p, torch.zeros(2), gy, gx)


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



def test_keypoint_scores_count_cells_exactly_at_the_radius():
    """A cell exactly ``radius`` cells from a prediction on a cell centre is inside, in every column and in the
    mirror image, rather than in or out by the rounding of its float32 distance."""
    h, w = 64, 48
    gx, gy = make_grid(w), make_grid(h)
    for j in range(2, w - 2):
        probs = torch.zeros(h, w)
        probs[30, j], probs[30, j - 2], probs[30, j + 2] = 0.5, 0.25, 0.25  # soft-argmax: cell (30, j)
        for p in (probs, probs.flip(-1)):
            assert float(keypoint_scores(p, soft_argmax(p, gx, gy), gx, gy, radius=2.0)) == pytest.approx(1.0)
    one = torch.zeros(h, w)
    one[30, 23] = 1.0  # just beyond the radius: a hundredth of a cell counts as outside
    beyond = torch.stack((gx[20] - 0.01 * 2 / w, gy[30]))
    assert float(keypoint_scores(one, beyond, gx, gy, radius=3.0)) == 0.0


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


# --------------------------------------------------------------------------------------------- autocast
def test_autocast_bf16_outputs_float32():
    """bf16 inputs (or float32 ones) under bf16 autocast give float32 results matching float32 math."""
    gx, gy = grids()
    logits = peak_logits(11.2, 7.7, amp=6.0, dtype=torch.float32).expand(2, H, W).clone()
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


@pytest.mark.parametrize('method', ['softmax', 'relu', 'abs'])
def test_huge_finite_logits_still_give_a_distribution(method):
    """beta * z, or the sum of a relu/abs map, can pass float32's largest value while every logit is finite."""
    logits = torch.full((1, 1, 16, 12), 1e35)
    logits[..., 3, 7] = 3e38
    grid_x, grid_y = make_grid(12), make_grid(16)
    for beta in (1.0, 10.0):
        z = logits.clone().requires_grad_(True)
        probs = normalize_heatmaps(z, method, beta)
        coords = soft_argmax(probs, grid_x, grid_y)
        coords.sum().backward()
        assert torch.isfinite(probs).all() and torch.isfinite(z.grad).all()
        torch.testing.assert_close(probs.sum((-2, -1)), torch.ones(1, 1))
        if method != 'softmax' and beta == 1.0:  # the same map as in float64, where the sum does not overflow
            expected = soft_argmax(normalize_heatmaps(logits.double(), method, beta), grid_x, grid_y)
            torch.testing.assert_close(coords.double(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize('size', [7, 48, 64])
def test_a_float64_grid_is_computed_in_float64(size):
    """make_grid(dtype=float64) (the codec's heatmap targets, the checkpoints' linspace) is exact in float64, not a
    float32 grid widened: those differ by ~1e-8."""
    j = torch.arange(size, dtype=torch.float64)
    assert torch.equal(make_grid(size, dtype=torch.float64), (2 * j + 1) / size - 1)
    assert torch.equal(make_grid(size, 'mmpose', input_size=4 * size + 1, dtype=torch.float64),
                       2 * j / size - 1 + 1 / (4 * size + 1))


def test_keypoint_scores_default_radius_is_two_cells():
    gx, gy = grids()
    probs = normalize_heatmaps(torch.randn(3, H, W) * 2)
    coords = soft_argmax(probs, gx, gy)
    torch.testing.assert_close(keypoint_scores(probs, coords, gx, gy),
                               keypoint_scores(probs, coords, gx, gy, radius=2.0), rtol=0, atol=0)
    assert not torch.equal(keypoint_scores(probs, coords, gx, gy),
                           keypoint_scores(probs, coords, gx, gy, radius=3.0))


def test_scores_stay_within_one_where_a_float32_map_sums_above_one():
    """A float32 softmax can sum to 1 + an ulp or two: a radius that covers every cell must still score <= 1."""
    gx, gy = grids()
    torch.manual_seed(0)
    probs = normalize_heatmaps(torch.randn(2000, H, W) * 3)
    assert (probs.sum((-2, -1)) > 1).any()  # the situation the clamp exists for
    scores = keypoint_scores(probs, soft_argmax(probs, gx, gy), gx, gy, radius=1e3)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_relu_default_eps_keeps_a_weak_but_positive_map_peaked():
    """eps (1e-12) only guards the all-zero map: one cell with f = 1e-4 is still a sharp peak, not the uniform map."""
    logits = torch.full((H, W), -1.0)
    logits[5, 7] = 1e-4
    p = normalize_heatmaps(logits, 'relu')
    assert p[5, 7] > 0.999


def test_shapes_are_worked_out_on_the_meta_device():
    """torch.autocast refuses the meta device, where a model's shapes are worked out without data."""
    logits = torch.empty(2, 4, H, W, device='meta')
    probs = normalize_heatmaps(logits)
    grid_x, grid_y = make_grid(W, device='meta'), make_grid(H, device='meta')
    assert probs.shape == (2, 4, H, W) and soft_argmax(probs, grid_x, grid_y).shape == (2, 4, 2)


def test_arguments_that_give_meaningless_values_are_refused():
    """A negative score radius scored as its absolute value, 0 above 0; an integer grid was all zeros."""
    probs = normalize_heatmaps(torch.randn(1, 4, H, W))
    grid_x, grid_y = make_grid(W), make_grid(H)
    for radius in (-1, 0, float('nan')):
        with pytest.raises(ValueError, match='radius must be a number of heatmap cells > 0'):
            keypoint_scores(probs, torch.zeros(1, 4, 2), grid_x, grid_y, radius=radius)
    with pytest.raises(ValueError, match='dtype must be a floating-point dtype, got torch.int64'):
        make_grid(5, dtype=torch.int64)


def test_keypoint_scores_name_coordinates_of_other_keypoints():
    probs = normalize_heatmaps(torch.randn(2, 4, H, W))
    with pytest.raises(ValueError, match=r'probs \(2, 4\), coords \(2, 3\)'):
        keypoint_scores(probs, torch.zeros(2, 3, 2), make_grid(W), make_grid(H))

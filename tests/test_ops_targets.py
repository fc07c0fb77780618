"""Gaussian targets, divergences and the variance regulariser (ipr_plugin.ops.targets)."""
import math

import pytest
import torch
from torch.autograd import gradcheck

from ipr_plugin.ops import (gaussian_heatmaps, js_divergence, kl_divergence, make_grid, normalize_heatmaps,
                            soft_argmax, variance_regularizer)

H, W = 64, 48


def _grids(h=H, w=W, mode='center', dtype=torch.float64):
    return (make_grid(w, mode=mode, input_size=4 * w, dtype=dtype),
            make_grid(h, mode=mode, input_size=4 * h, dtype=dtype))


def _inside_coords(n=16, dtype=torch.float64):
    """Locations at least 12 cells (6 sigma at sigma 2) from every border."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 2, generator=g, dtype=dtype) * 2 * torch.tensor([0.5, 0.6], dtype=dtype) \
        - torch.tensor([0.5, 0.6], dtype=dtype)


def _random_probs(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return normalize_heatmaps(torch.randn(*shape, generator=g, dtype=dtype) * 2)


# -------------------------------------------------------------------------------------- Gaussian targets
@pytest.mark.parametrize('mode', ['center', 'mmpose'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_gaussian_sums_to_one_and_recovers_location(mode, dtype):
    gx, gy = _grids(mode=mode, dtype=dtype)
    coords = _inside_coords(dtype=dtype)
    maps = gaussian_heatmaps(coords, gx, gy, sigma=2.0)
    assert maps.shape == (16, H, W) and maps.dtype == dtype
    assert (maps >= 0).all()
    assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(16, dtype=dtype), atol=1e-5)
    assert (soft_argmax(maps, gx, gy) - coords).abs().max() < 1e-4


def test_gaussian_matches_direct_formula_with_sigma_in_cells():
    gx, gy = _grids()
    cx, cy, sigma = 20.3, 33.8, 1.5  # in cells
    coords = torch.tensor([(2 * cx + 1) / W - 1, (2 * cy + 1) / H - 1], dtype=torch.float64)
    x = torch.arange(W, dtype=torch.float64)
    y = torch.arange(H, dtype=torch.float64).unsqueeze(-1)
    direct = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
    assert torch.allclose(gaussian_heatmaps(coords, gx, gy, sigma), direct / direct.sum(), atol=1e-12)


def test_gaussian_far_outside_collapses_onto_nearest_border():
    gx, gy = _grids(dtype=torch.float32)
    coords = torch.tensor([[50.0, 0.1],       # far right, inside vertically
                           [-1e6, -1e6],      # far beyond the top-left corner
                           [1.2, 3.0e4]])     # beyond the bottom edge
    coords.requires_grad_(True)
    maps = gaussian_heatmaps(coords, gx, gy, sigma=2.0)
    assert torch.isfinite(maps).all()
    assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(3), atol=1e-5)
    assert torch.allclose(maps[0].sum(0)[-1], torch.tensor(1.0))          # all mass in the last column
    assert abs(float(soft_argmax(maps[0].detach(), gx, gy)[1]) - 0.1) < 1e-4        # y profile unaffected
    assert torch.allclose(maps[1, 0, 0], torch.tensor(1.0))                # top-left corner cell
    assert torch.allclose(maps[2].sum(1)[-1], torch.tensor(1.0))           # all mass in the last row
    maps.sum().backward()
    assert torch.isfinite(coords.grad).all()


def test_gaussian_bad_arguments():
    gx, gy = _grids()
    with pytest.raises(ValueError, match=r'coords.*\(4, 3\)'):
        gaussian_heatmaps(torch.zeros(4, 3, dtype=torch.float64), gx, gy, 2.0)
    with pytest.raises(ValueError, match='sigma'):
        gaussian_heatmaps(torch.zeros(4, 2, dtype=torch.float64), gx, gy, 0.0)


# ------------------------------------------------------------------------------------------- divergences
def test_divergences_zero_for_identical_positive_otherwise():
    p = _random_probs(3, 5, H, W)
    q = _random_probs(3, 5, H, W, seed=1)
    for div in (kl_divergence, js_divergence):
        same = div(p, p)
        assert same.shape == (3, 5)
        assert same.abs().max() < 1e-12
        assert (div(p, q) > 1e-3).all()


def test_kl_matches_definition():
    p = _random_probs(4, 6, 7)
    q = _random_probs(4, 6, 7, seed=1)
    expected = (p * (p.log() - q.log())).sum(dim=(-2, -1))
    assert torch.allclose(kl_divergence(p, q), expected, atol=1e-12)


def test_js_symmetric_and_bounded():
    p = _random_probs(3, H, W)
    q = _random_probs(3, H, W, seed=2)
    js = js_divergence(p, q)
    assert torch.allclose(js, js_divergence(q, p), atol=1e-12)
    assert ((js >= 0) & (js <= math.log(2))).all()
    disjoint_p = torch.zeros(H, W, dtype=torch.float64)
    disjoint_q = torch.zeros(H, W, dtype=torch.float64)
    disjoint_p[:10] = 1 / (10 * W)
    disjoint_q[-10:] = 1 / (10 * W)
    js_max = js_divergence(disjoint_p, disjoint_q)
    assert abs(float(js_max) - math.log(2)) < 1e-9
    assert float(js_max) <= math.log(2) + 1e-12


@pytest.mark.parametrize('div', [kl_divergence, js_divergence])
def test_divergence_gradients_finite_at_exact_zeros(div):
    p = torch.zeros(3, 4, 5)
    q = torch.zeros(3, 4, 5)
    p[0, :2] = 1 / 10          # p has zeros where q does not
    q[0] = 1 / 20
    p[1] = 1 / 20              # q has zeros where p does not (KL: capped, not inf)
    q[1, 2:] = 1 / 10
    p[2, 0, 0] = q[2, 0, 0] = 1  # both mostly zero, identical
    p.requires_grad_(True)
    q.requires_grad_(True)
    out = div(p, q)
    assert torch.isfinite(out).all()
    assert out[2].abs() < 1e-6
    out.sum().backward()
    assert torch.isfinite(p.grad).all() and torch.isfinite(q.grad).all()


def test_divergence_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r'p.*\(2, 4, 5\).*q.*\(2, 5, 4\)'):
        kl_divergence(torch.rand(2, 4, 5), torch.rand(2, 5, 4))
    with pytest.raises(ValueError, match=r'q.*\(5,\)'):
        js_divergence(torch.rand(4, 5), torch.rand(5))


# ---------------------------------------------------------------------------------- variance regulariser
def test_variance_regularizer_zero_for_matching_gaussian():
    gx, gy = _grids()
    coords = _inside_coords(4)
    target = gaussian_heatmaps(coords, gx, gy, sigma=2.0)
    assert variance_regularizer(target, coords, gx, gy, sigma=2.0).abs().max() < 1e-12
    wider = gaussian_heatmaps(coords, gx, gy, sigma=3.0)
    reg = variance_regularizer(wider, coords, gx, gy, sigma=2.0)
    # var_x = (6/W)^2 against (4/W)^2, likewise in y (up to truncation of the sigma-3 tails at the border)
    expected = ((36 - 16) / W ** 2) ** 2 + ((36 - 16) / H ** 2) ** 2
    assert torch.allclose(reg, torch.full_like(reg, expected), rtol=2e-3)


def test_variance_regularizer_bad_grids_raise():
    gx, gy = _grids()
    with pytest.raises(ValueError, match=r'grid_x'):
        variance_regularizer(torch.rand(2, H, W), torch.zeros(2, 2), gy, gx, 2.0)


# -------------------------------------------------------------------------------------------- gradcheck
def test_gradcheck_gaussian_heatmaps():
    gx, gy = _grids(5, 6)
    coords = (torch.rand(2, 2, dtype=torch.float64) - 0.5).requires_grad_(True)
    assert gradcheck(lambda c: gaussian_heatmaps(c, gx, gy, 1.2), (coords,))


@pytest.mark.parametrize('div', [kl_divergence, js_divergence])
def test_gradcheck_divergences(div):
    p = _random_probs(2, 4, 5).requires_grad_(True)
    q = _random_probs(2, 4, 5, seed=3).requires_grad_(True)
    assert gradcheck(div, (p, q))


def test_gradcheck_variance_regularizer():
    gx, gy = _grids(4, 5)
    probs = _random_probs(2, 4, 5).requires_grad_(True)
    coords = (torch.rand(2, 2, dtype=torch.float64) - 0.5).requires_grad_(True)
    assert gradcheck(lambda p, c: variance_regularizer(p, c, gx, gy, 0.8), (probs, coords))


# --------------------------------------------------------------------------------------------- autocast
def test_autocast_bf16_outputs_float32():
    gx, gy = _grids(dtype=torch.float32)
    coords = _inside_coords(4, dtype=torch.float32).bfloat16()
    p = _random_probs(4, H, W, dtype=torch.float32).bfloat16()
    with torch.no_grad():
        c32, p32 = coords.float(), p.float()
        q32 = gaussian_heatmaps(c32, gx, gy, 2.0)
        refs = (q32, kl_divergence(p32, q32), js_divergence(p32, q32),
                variance_regularizer(p32, c32, gx, gy, 2.0))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            q = gaussian_heatmaps(coords, gx, gy, 2.0)
            outs = (q, kl_divergence(p, q.bfloat16()), js_divergence(p, q),
                    variance_regularizer(p, coords, gx, gy, 2.0))
    for out, ref in zip(outs, refs):
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (outs[0] - refs[0]).abs().max() < 1e-3
    assert (outs[2] - refs[2]).abs().max() < 1e-3
    assert (outs[3] - refs[3]).abs().max() < 1e-3
    # KL against a bf16-rounded target differs only through that rounding.
    assert (outs[1] - kl_divergence(p32, q32.bfloat16().float())).abs().max() < 1e-3


def test_a_grid_of_another_shape_is_refused_not_read_as_another_width():
    """A (1, W) grid was taken for a 1-cell one: the Gaussian came out W times too wide, without an error."""
    gx, gy = make_grid(48), make_grid(64)
    for bad_x, bad_y, name in ((gx[None], gy, 'grid_x'), (gx, gy[:, None], 'grid_y'), (gx, gy[:0], 'grid_y')):
        with pytest.raises(ValueError, match=rf'{name} must have shape \(W,\) or \(H,\)'):
            gaussian_heatmaps(torch.zeros(1, 2), bad_x, bad_y, 2.0)


def test_maps_and_coordinates_of_other_batches_are_refused_by_name():
    """torch's "size of tensor a (4) must match the size of tensor b (3)" named neither argument."""
    p, q = normalize_heatmaps(torch.randn(2, 4, 8, 6)), normalize_heatmaps(torch.randn(3, 4, 8, 6))
    for divergence in (kl_divergence, js_divergence):
        with pytest.raises(ValueError, match=r'the leading dimensions of p and q do not match: p \(2, 4\), q \(3, 4\)'):
            divergence(p, q)
    with pytest.raises(ValueError, match=r'dimensions of probs and coords do not match: probs \(2, 4\), coords '
                                         r'\(2, 3\)'):
        variance_regularizer(p, torch.zeros(2, 3, 2), make_grid(6), make_grid(8), 1.0)

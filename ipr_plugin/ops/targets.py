"""Heatmap targets and distribution losses for integral regression.

Same conventions as :mod:`ipr_plugin.ops.integral`: maps are (..., H, W), coordinates (..., 2) ``(x, y)``
in normalised units, ``grid_x`` (W,) / ``grid_y`` (H,) each cell's normalised grid point (``make_grid``).
Everything computes in float32 (float64 for float64 inputs) with autocast disabled, and does not synchronise
with the host.
"""
import torch
from torch import Tensor

from .integral import _cell_offsets, _check_broadcast, _check_coords, _check_maps, _check_probs_and_coords, \
    _full_precision, _marginals, _upcast

__all__ = ['gaussian_heatmaps', 'kl_divergence', 'js_divergence', 'variance_regularizer']


def _check_sigma(sigma: float) -> None:
    if not sigma > 0:
        raise ValueError(f'sigma must be > 0 (heatmap cells), got {sigma!r}')


def _check_pair(p: Tensor, q: Tensor) -> None:
    _check_maps('p', p)
    _check_maps('q', q)
    if p.shape[-2:] != q.shape[-2:]:
        raise ValueError(f'p and q must have the same (H, W), got p {tuple(p.shape)} and q {tuple(q.shape)}')
    _check_broadcast('the leading dimensions of p and q', p=p.shape[:-2], q=q.shape[:-2])


def _safe_log(x: Tensor) -> Tensor:
    """log with its argument floored at the dtype's smallest normal number.

    Keeps ``0 * log 0 = 0`` and every gradient finite at exact zeros (the clamp passes a zero gradient
    there instead of ``1 / 0``); costs a bias of at most ``finfo.tiny`` in the argument.
    """
    return torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))


def _plogp_over(p: Tensor, log_q: Tensor) -> Tensor:
    """sum over (H, W) of ``p (log p - log_q)``: (..., H, W) -> (...)."""
    return (p * (_safe_log(p) - log_q)).sum(dim=(-2, -1))


def gaussian_heatmaps(coords: Tensor, grid_x: Tensor, grid_y: Tensor, sigma: float) -> Tensor:
    """Gaussian target maps centred at exact sub-cell locations, each normalised to sum to 1.

    Built separably as the outer product of 1-D Gaussians sampled at the grid points. Each 1-D profile is
    normalised in log space (a softmax of ``-d^2 / (2 sigma^2)``), which equals the directly normalised
    Gaussian wherever that is representable and never underflows to an all-zero map: for a location far
    outside the map the mass collapses onto the border row/column nearest to it (the limit of the
    truncated, renormalised Gaussian) instead of becoming NaN. Such keypoints should get zero loss weight
    from the caller.

    Args:
        coords: (..., 2) ``(x, y)`` centres in normalised units.
        grid_x: (W,) normalised x of each cell's grid point.
        grid_y: (H,) normalised y of each cell's grid point.
        sigma: standard deviation in heatmap cells (one cell is ``2 / W`` normalised units in x, ``2 / H``
            in y).

    Returns:
        (..., H, W) maps summing to 1, float32 (float64 if an input is float64); differentiable w.r.t.
        ``coords``.
    """
    _check_coords('coords', coords)
    _check_sigma(sigma)
    for name, grid in (('grid_x', grid_x), ('grid_y', grid_y)):  # a (1, W) grid made sigma W times too wide
        if grid.dim() != 1 or not len(grid):
            raise ValueError(f'{name} must have shape (W,) or (H,) (make_grid), got {tuple(grid.shape)}')
    with _full_precision(coords):
        coords, grid_x, grid_y = _upcast(coords, grid_x, grid_y)
        dx, dy = _cell_offsets(coords, grid_x, grid_y)
        gx = torch.softmax(-0.5 * (dx * (grid_x.shape[0] / (2 * sigma))).square(), dim=-1)
        gy = torch.softmax(-0.5 * (dy * (grid_y.shape[0] / (2 * sigma))).square(), dim=-1)
        return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def kl_divergence(p: Tensor, q: Tensor) -> Tensor:
    """KL(p || q) = sum p (log p - log q) per map.

    ``0 log 0 = 0``. Where ``q = 0 < p`` the true value is infinite; here ``log q`` is floored at
    ``log(finfo.tiny)`` (about -87 in float32), so the result is large but finite, and gradients are finite
    everywhere, including at exact zeros of ``p`` or ``q``.

    Args:
        p: (..., H, W) predicted probability maps.
        q: (..., H, W) target probability maps (broadcastable against ``p``).

    Returns:
        (...) divergences in nats, float32 (float64 if an input is float64).
    """
    _check_pair(p, q)
    with _full_precision(p):
        p, q = _upcast(p, q)
        return _plogp_over(p, _safe_log(q))


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence ``0.5 KL(p || m) + 0.5 KL(q || m)``, ``m = (p + q) / 2``, per map.

    Symmetric, in ``[0, log 2]``, finite with finite gradients at exact zeros of ``p`` and/or ``q``.

    Args:
        p: (..., H, W) predicted probability maps.
        q: (..., H, W) target probability maps (broadcastable against ``p``).

    Returns:
        (...) divergences in nats, float32 (float64 if an input is float64).
    """
    _check_pair(p, q)
    with _full_precision(p):
        p, q = _upcast(p, q)
        log_m = _safe_log(0.5 * (p + q))
        return 0.5 * (_plogp_over(p, log_m) + _plogp_over(q, log_m))


def variance_regularizer(probs: Tensor, coords: Tensor, grid_x: Tensor, grid_y: Tensor,
                         sigma: float) -> Tensor:
    """Pull the spread of each map towards that of a Gaussian target of std ``sigma`` cells.

    ``(var_x - s_x^2)^2 + (var_y - s_y^2)^2`` with ``var_x = sum_j p_j (g_j - u_x)^2`` the variance of the
    map around the given (predicted) mean, and ``s_x = 2 sigma / W``, ``s_y = 2 sigma / H`` the target std,
    all in normalised units.

    Args:
        probs: (..., H, W) probability maps.
        coords: (..., 2) ``(x, y)`` means in normalised units (usually the soft-argmax of ``probs``).
        grid_x: (W,) normalised x of each cell's grid point.
        grid_y: (H,) normalised y of each cell's grid point.
        sigma: target std in heatmap cells.

    Returns:
        (...) penalties in normalised units^4, float32 (float64 if an input is float64).
    """
    _check_probs_and_coords(probs, coords, grid_x, grid_y)
    _check_sigma(sigma)
    with _full_precision(probs):
        probs, coords, grid_x, grid_y = _upcast(probs, coords, grid_x, grid_y)
        h, w = probs.shape[-2:]
        px, py = _marginals(probs)
        dx, dy = _cell_offsets(coords, grid_x, grid_y)
        var_x = (px * dx.square()).sum(-1)
        var_y = (py * dy.square()).sum(-1)
        return (var_x - (2 * sigma / w) ** 2).square() + (var_y - (2 * sigma / h) ** 2).square()

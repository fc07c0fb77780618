"""Soft-argmax (integral regression) on heatmaps.

Conventions: a heatmap has H x W cells; ``grid_x`` (W,) and ``grid_y`` (H,) hold the normalised coordinate
of each cell's grid point (:func:`make_grid`: the cell centre by default, mmpose's ``j / W`` point with
``mode='mmpose'``; see :mod:`ipr_plugin.ops.coords`); coordinates are ``(x, y)`` in normalised units.

Every function here computes in float32 (float64 if an input is float64) and disables autocast, because
bf16/fp16 softmax sums and expectations lose the sub-cell precision the method exists for. None of them
synchronises with the host, so they are safe inside the training step.
"""
import math
from contextlib import nullcontext
from typing import Any, ContextManager, Optional, Tuple, Union

import torch
from torch import Tensor

Beta = Union[float, Tensor]

__all__ = ['make_grid', 'normalize_heatmaps', 'soft_argmax', 'log_background_share', 'background_share',
           'debias_from_share', 'debias_coords', 'keypoint_scores']

GRID_MODES = ('center', 'mmpose')
NORMALIZERS = ('softmax', 'relu', 'abs')
BACKGROUNDS = ('zero', 'median')
# Cap of the background share in debias: at most 1 / (1 - 0.9) = 10x amplification (see debias_coords).
MAX_BACKGROUND = 0.9
# relative, on radius^2 in keypoint_scores: float32 rounding of a distance is far below it, a cell's size far above
_RADIUS_TOLERANCE = 1e-4


# ----------------------------------------------------------------------------------------- shared helpers
def _compute_dtype(*tensors: Optional[Tensor]) -> torch.dtype:
    """float64 if any tensor input is float64, else float32 (never half precision)."""
    if any(isinstance(t, Tensor) and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _upcast(*tensors: Union[Tensor, float, None]) -> Tuple[Any, ...]:
    """Cast the tensor arguments to the common compute dtype; pass floats/None through."""
    dtype = _compute_dtype(*tensors)
    return tuple(t.to(dtype) if isinstance(t, Tensor) else t for t in tensors)


def _full_precision(ref: Tensor) -> ContextManager:
    """Context that disables autocast on ``ref``'s device type (none on a device autocast does not know, such as
    ``meta``, where shapes are worked out without data: torch.autocast raises there)."""
    if ref.device.type not in ('cpu', 'cuda', 'xpu', 'mps', 'hpu', 'xla', 'mtia'):
        return nullcontext()
    return torch.autocast(device_type=ref.device.type, enabled=False)


def _check_maps(name: str, maps: Tensor) -> None:
    if maps.dim() < 2:
        raise ValueError(f'{name} must have shape (..., H, W), got {tuple(maps.shape)}')


def _check_coords(name: str, coords: Tensor) -> None:
    if coords.dim() < 1 or coords.shape[-1] != 2:
        raise ValueError(f'{name} must have shape (..., 2), got {tuple(coords.shape)}')


def _check_broadcast(what: str, **shapes: Tuple[int, ...]) -> None:
    """Refuse ``shapes`` (argument name: the part of its shape that must broadcast) that do not broadcast
    together, naming the arguments, instead of torch's "size of tensor a (4) must match ... b (3)"."""
    try:
        torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        said = ', '.join(f'{name} {tuple(shape)}' for name, shape in shapes.items())
        raise ValueError(f'{what} do not match: {said}') from None


def _check_grids(maps_name: str, maps: Tensor, grid_x: Tensor, grid_y: Tensor) -> None:
    _check_maps(maps_name, maps)
    h, w = maps.shape[-2:]
    if tuple(grid_x.shape) != (w,):
        raise ValueError(f'grid_x must have shape (W,) = ({w},) to match {maps_name} of shape '
                         f'{tuple(maps.shape)}, got {tuple(grid_x.shape)}')
    if tuple(grid_y.shape) != (h,):
        raise ValueError(f'grid_y must have shape (H,) = ({h},) to match {maps_name} of shape '
                         f'{tuple(maps.shape)}, got {tuple(grid_y.shape)}')


def _check_probs_and_coords(probs: Tensor, coords: Tensor, grid_x: Tensor, grid_y: Tensor) -> None:
    """Maps with their grids, and one coordinate per map (the leading dimensions broadcast)."""
    _check_coords('coords', coords)
    _check_grids('probs', probs, grid_x, grid_y)
    _check_broadcast('the leading (batch, keypoint) dimensions of probs and coords', probs=probs.shape[:-2],
                     coords=coords.shape[:-1])


def _marginals(probs: Tensor) -> Tuple[Tensor, Tensor]:
    """(..., H, W) -> x marginal (..., W) and y marginal (..., H)."""
    return probs.sum(-2), probs.sum(-1)


def _cell_offsets(coords: Tensor, grid_x: Tensor, grid_y: Tensor) -> Tuple[Tensor, Tensor]:
    """Signed offsets ``grid - coord`` in normalised units: x (..., W) and y (..., H)."""
    return grid_x - coords[..., 0:1], grid_y - coords[..., 1:2]


def _scaled(logits: Tensor, beta: Beta) -> Tensor:
    """``beta * logits``, clamped to the finite range: an infinite logit (a float16 convolution overflowing under
    autocast) or a product past the float range would give the normalised map a finite value but its gradient
    NaNs (``inf - inf`` in softmax's and logsumexp's backward). An infinite logit becomes the extreme value
    itself, with no gradient: multiplied by beta, it would give a learnt beta the gradient ``0 * inf``, NaN.
    A NaN logit stays NaN (the head names it)."""
    limit = torch.finfo(logits.dtype).max
    finite = torch.isfinite(logits)
    scaled = (beta * torch.where(finite, logits, 0.0)).clamp(-limit, limit)
    return torch.where(finite, scaled, logits.detach().clamp(-limit, limit))


def _flat_logsumexp(x: Tensor) -> Tensor:
    """logsumexp over the last two dims: (..., H, W) -> (...)."""
    return torch.logsumexp(x.flatten(-2), dim=-1)


# ------------------------------------------------------------------------------------------------ public
def make_grid(size: int, mode: str = 'center', input_size: Optional[int] = None,
              device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised coordinate of each cell's grid point along one heatmap axis.

    Args:
        size: number of cells W (or H).
        mode: ``'center'``: ``g_j = (2 j + 1) / W - 1``, the DSNT cell centres, symmetric about 0.
            ``'mmpose'``: mmpose 1.3.2's grid ``e_j = j / W`` decoded as ``x = e * w`` and mapped into our
            convention, ``g_j = 2 j / W - 1 + 1 / w``; needs ``input_size`` = w (pixels). Under this mapping
            mmpose's flip ``e' = 1 - e - 1/w`` is exactly ``u -> -u``.
        input_size: input width w (or height h) in pixels, only for ``mode='mmpose'``.
        device, dtype: of the returned grid (computed in float64 for float64, else in float32).

    Returns:
        (size,) normalised coordinates, ``dtype`` on ``device``.
    """
    if mode not in GRID_MODES:
        raise ValueError(f'mode must be one of {GRID_MODES}, got {mode!r}')
    if int(size) != size or size < 1:
        raise ValueError(f'size must be a positive integer, got {size!r}')
    if not dtype.is_floating_point:  # the points lie in (-1, 1): an integer grid is all zeros
        raise ValueError(f'dtype must be a floating-point dtype, got {dtype}')
    work = torch.float64 if dtype == torch.float64 else torch.float32
    j = torch.arange(int(size), device=device, dtype=work)
    if mode == 'center':
        return ((2 * j + 1) / size - 1).to(dtype)
    if input_size is None or input_size <= 0:
        raise ValueError(f"mode='mmpose' needs a positive input_size (input pixels), got {input_size!r}")
    return (2 * j / size - 1 + 1 / input_size).to(dtype)


def normalize_heatmaps(logits: Tensor, method: str = 'softmax', beta: Beta = 1.0,
                       eps: float = 1e-12) -> Tensor:
    """Turn per-keypoint logits into probability maps, each summing to 1 over its H x W cells.

    ``softmax``: ``p = softmax(beta z)``. ``relu`` / ``abs``: with ``f = relu(beta z)`` or ``|beta z|`` and
    ``S = sum f``, ``p = f / (S + eps) + (eps / (S + eps)) / (H W)``, i.e. ``f / S`` mixed with the uniform
    map with weight ``eps / (S + eps)``. It sums to 1 exactly, cannot divide by zero, and is the uniform map
    when every ``f`` is 0.

    Args:
        logits: (..., H, W) raw heatmap logits (any float dtype; unitless).
        method: ``'softmax'`` (default), ``'relu'`` or ``'abs'``.
        beta: inverse temperature; a float or a tensor broadcastable against ``logits`` (e.g. 0-d, or
            (K, 1, 1) per keypoint). The caller keeps a learnable beta positive (e.g. softplus); gradients
            flow to it.
        eps: > 0, see above (``relu``/``abs`` only).

    Returns:
        (..., H, W) probabilities in float32 (float64 if an input is float64).
    """
    _check_maps('logits', logits)
    if method not in NORMALIZERS:
        raise ValueError(f'method must be one of {NORMALIZERS}, got {method!r}')
    if not eps > 0:
        raise ValueError(f'eps must be > 0, got {eps!r}')
    with _full_precision(logits):
        logits, beta = _upcast(logits, beta)
        scaled = _scaled(logits, beta)
        if method == 'softmax':
            return torch.softmax(scaled.flatten(-2), dim=-1).view_as(scaled)
        f = torch.relu(scaled) if method == 'relu' else scaled.abs()
        # The formula is unchanged by dividing f and eps by the same c; c = the map's largest f (when > 1) keeps
        # the sum of huge values finite. Detached: the maps do not depend on c, so neither does the gradient.
        c = f.detach().amax(dim=(-2, -1), keepdim=True).clamp_min(1.0)
        f, eps_c = f / c, eps / c
        denom = f.sum(dim=(-2, -1), keepdim=True) + eps_c
        n_cells = f.shape[-2] * f.shape[-1]
        return f / denom + (eps_c / denom) / n_cells


def soft_argmax(probs: Tensor, grid_x: Tensor, grid_y: Tensor) -> Tensor:
    """Expected grid location under each probability map, computed separably.

    Args:
        probs: (..., H, W) probability maps (each summing to 1).
        grid_x: (W,) normalised x of each cell's grid point (:func:`make_grid`).
        grid_y: (H,) normalised y of each cell's grid point.

    Returns:
        (..., 2) ``(x, y)`` in normalised units, float32 (float64 if an input is float64).
    """
    _check_grids('probs', probs, grid_x, grid_y)
    with _full_precision(probs):
        probs, grid_x, grid_y = _upcast(probs, grid_x, grid_y)
        px, py = _marginals(probs)
        return torch.stack(((px * grid_x).sum(-1), (py * grid_y).sum(-1)), dim=-1)


def log_background_share(logits: Tensor, beta: Beta, background: str = 'zero') -> Tensor:
    """``log r``, the log of :func:`background_share`; differentiable, and finite where ``r`` overflows.

    Args, shapes and units as for :func:`background_share`: (..., H, W) logits -> (...) ``log r``.
    """
    _check_maps('logits', logits)
    if background not in BACKGROUNDS:
        raise ValueError(f'background must be one of {BACKGROUNDS}, got {background!r}')
    with _full_precision(logits):
        logits, beta = _upcast(logits, beta)
        scaled = _scaled(logits, beta)
        log_r = math.log(logits.shape[-2] * logits.shape[-1]) - _flat_logsumexp(scaled)
        if background == 'median':
            # not detached: its gradient is what keeps r's gradient blind to a common shift, like its value
            log_r = log_r + _lower_median(scaled.flatten(-2))
        return log_r


def _lower_median(values: Tensor) -> Tensor:
    """``values.median(dim=-1).values`` (the lower median of an even count), taken from a sort: ``median`` has no
    ONNX operator, and on CUDA it raises under ``torch.use_deterministic_algorithms(True)`` (its indices
    output), which a run with ``randomness=dict(deterministic=True)`` turns on."""
    return values.sort(dim=-1).values[..., (values.shape[-1] - 1) // 2]


def _one_minus_exp(x: Tensor) -> Tensor:
    """``1 - exp(x)``: through ``expm1`` (exact near 0), or as written when exported to ONNX, which has no
    ``expm1``; the callers' cap (``x <= log(max_background)``, log 0.9 by default) keeps the written form
    within a few float32 roundings of it."""
    if torch.onnx.is_in_onnx_export():
        return 1 - torch.exp(x)
    return -torch.expm1(x)


def background_share(logits: Tensor, beta: Beta, background: str = 'zero') -> Tensor:
    """Share ``r`` of the softmax's mass that a flat background holds, as :func:`debias_coords` models it.

    With ``C = sum exp(beta z)`` over the H x W cells and the background at logit level ``b`` in every cell,
    ``r = HW exp(beta b) / C``. ``background='zero'`` takes ``b = 0``, Gu et al.'s assumption and mmpose's;
    then ``r`` moves when a constant is added to every logit, though the softmax does not. ``'median'`` takes
    ``b`` = the map's median logit, which makes ``r`` a function of the map's shape alone. Not capped: above
    ``MAX_BACKGROUND`` debias stops being exact.

    Args:
        logits: (..., H, W) logits (softmax normaliser).
        beta: inverse temperature (float or tensor broadcastable against ``logits``).
        background: ``'zero'`` or ``'median'``.

    Returns:
        (...) ``r >= 0``, float32 (float64 if an input is float64).
    """
    return log_background_share(logits, beta, background).exp()


def debias_from_share(coords: Tensor, log_share: Tensor, grid_x: Tensor, grid_y: Tensor,
                      max_background: float = MAX_BACKGROUND, clamp: bool = True) -> Tensor:
    """The debias correction of :func:`debias_coords`, given the background share it assumes.

    Split out so that a caller who also reports the share (the head logs it in training) computes it once.

    Args:
        coords: (..., 2) soft-argmax ``(x, y)``, normalised units.
        log_share: (...) ``log r`` from :func:`log_background_share` of the logits behind ``coords``.
        grid_x: (W,) normalised x of each cell's grid point (:func:`make_grid`).
        grid_y: (H,) normalised y of each cell's grid point.
        max_background: cap of ``r``, in (0, 1).
        clamp: clamp the result to the grid's range [g_0, g_{W-1}]. A clamped coordinate has no gradient, and neither
            has a capped ``r``: a capped keypoint pushed beyond the range gets none at all, so a loss may want
            the unclamped value.

    Returns:
        (..., 2) debiased ``(x, y)`` in normalised units, float32 (float64 if an input is float64).
    """
    _check_coords('coords', coords)
    if tuple(log_share.shape) != tuple(coords.shape[:-1]):
        raise ValueError(f'log_share must have shape {tuple(coords.shape[:-1])} to match coords of shape '
                         f'{tuple(coords.shape)}, got {tuple(log_share.shape)}')
    if not 0.0 < max_background < 1.0:
        raise ValueError(f'debias: max_background must be in (0, 1), got {max_background}')
    with _full_precision(coords):
        coords, log_share, grid_x, grid_y = _upcast(coords, log_share, grid_x, grid_y)
        # capped through the exponent: capped entries get a zero (not NaN) gradient with respect to r
        one_minus_r = _one_minus_exp(log_share.clamp(max=math.log(max_background)))
        g_mean = torch.stack((grid_x.mean(), grid_y.mean()))
        debiased = g_mean + (coords - g_mean) / one_minus_r.unsqueeze(-1)
        if not clamp:
            return debiased
        g_min = torch.stack((grid_x.min(), grid_y.min()))
        g_max = torch.stack((grid_x.max(), grid_y.max()))
        return torch.maximum(torch.minimum(debiased, g_max), g_min)


def debias_coords(coords: Tensor, logits: Tensor, beta: Beta, grid_x: Tensor, grid_y: Tensor,
                  max_background: float = MAX_BACKGROUND, background: str = 'zero') -> Tensor:
    """Remove the pull towards the grid mean that a flat softmax background puts on soft-argmax.

    Gu et al., "Removing the Bias of Integral Pose Regression", ICCV 2021. Model: ``exp(beta z)`` is a peak
    plus a flat background of ``exp(beta b)`` per cell, which holds the share ``r`` of the mass
    (:func:`background_share`; ``b = 0`` in the paper) at the grid mean ``g``. The peak's own expectation is
    then ``u = g + (u_hat - g) / (1 - r)``, exact where the model holds. With ``background='zero'`` that needs
    the background logits at 0, which a softmax never asks of a network; ``'median'`` measures ``b`` instead.

    Where the background holds most of the mass (``r`` near or above 1: no peak yet, as in every map of a
    freshly initialised model, or background logits below ``b``) the model fails and ``1 / (1 - r)`` would
    amplify any offset from the grid mean without bound; clamping the result then leaves those keypoints
    with zero gradient, and training from scratch can stall there for good. So ``r`` is capped at
    ``max_background``: the correction is exact while the peak holds at least ``1 - max_background`` of the
    mass and amplifies by at most ``1 / (1 - max_background)`` (10x) otherwise, keeping gradients alive. The
    peak is a distribution over the cells, so its expectation lies between the first and last grid points:
    the result is also clamped to that range.

    Args:
        coords: (..., 2) ``(x, y)`` from :func:`soft_argmax` of ``normalize_heatmaps(logits, 'softmax',
            beta)``, normalised units.
        logits: (..., H, W) the logits those coordinates came from (softmax normaliser only).
        beta: the same inverse temperature (float or tensor broadcastable against ``logits``).
        grid_x: (W,) normalised x of each cell's grid point (:func:`make_grid`).
        grid_y: (H,) normalised y of each cell's grid point.
        max_background: cap of the background's share ``r``, in (0, 1).
        background: the background level, ``'zero'`` (the paper's) or ``'median'`` (see above).

    Returns:
        (..., 2) debiased ``(x, y)`` in normalised units, float32 (float64 if an input is float64).
    """
    _check_coords('coords', coords)
    _check_grids('logits', logits, grid_x, grid_y)
    return debias_from_share(coords, log_background_share(logits, beta, background), grid_x, grid_y,
                             max_background)


def keypoint_scores(probs: Tensor, coords: Tensor, grid_x: Tensor, grid_y: Tensor,
                    radius: float = 2.0) -> Tensor:
    """Confidence of each keypoint: the probability mass near its predicted location.

    Sums ``p_j`` over the cells whose centre lies within ``radius`` heatmap cells of ``coords``, distances
    measured in cells (normalised offset times W/2, resp. H/2). A uniform map scores about
    ``pi radius^2 / (H W)``, a sharp peak at the prediction about 1. Not meant to be differentiated (call
    it under ``torch.no_grad()``); it does not synchronise.

    Args:
        probs: (..., H, W) probability maps.
        coords: (..., 2) predicted ``(x, y)`` in normalised units.
        grid_x: (W,) normalised x of each cell's grid point (:func:`make_grid`).
        grid_y: (H,) normalised y of each cell's grid point.
        radius: in heatmap cells.

    Returns:
        (...) scores in [0, 1], float32 (float64 if an input is float64).
    """
    _check_probs_and_coords(probs, coords, grid_x, grid_y)
    if not (isinstance(radius, (int, float)) and radius > 0):  # a negative one scored as its absolute value
        raise ValueError(f'radius must be a number of heatmap cells > 0, got {radius!r}')
    with _full_precision(probs):
        probs, coords, grid_x, grid_y = _upcast(probs, coords, grid_x, grid_y)
        h, w = probs.shape[-2:]
        dx, dy = _cell_offsets(coords, grid_x, grid_y)
        dist2 = (dy * (h / 2)).square().unsqueeze(-1) + (dx * (w / 2)).square().unsqueeze(-2)
        # A cell exactly `radius` cells away (the usual integer radius, a prediction on a cell centre) must not
        # fall in or out by the rounding of dist2, which would score a map and its mirror image differently.
        inside = (dist2 <= radius * radius * (1 + _RADIUS_TOLERANCE)).to(probs.dtype)
        return (probs * inside).sum(dim=(-2, -1)).clamp(0.0, 1.0)

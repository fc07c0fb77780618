"""Pixel <-> normalised coordinate conventions (DSNT convention).

Pixel ``i`` of an image of width ``w`` has its centre at ``x = i``; the image spans ``x`` in
``[-0.5, w - 0.5]``. Normalised coordinates map that span onto ``[-1, 1]``::

    u = (2 x + 1) / w - 1          x = ((u + 1) w - 1) / 2

so pixel 0 maps to ``-1 + 1/w``, pixel ``w - 1`` to ``1 - 1/w``, and a horizontal flip of the image
(``x -> w - 1 - x``) is exactly ``u -> -u``. The same holds for ``y`` with the height ``h``.

The coordinate functions are plain element-wise arithmetic and accept NumPy arrays or torch tensors, returning
the same type (differentiable for tensors); :func:`flip_maps`, the flip of heatmaps, takes torch tensors.
"""
from typing import Sequence, TypeVar, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
ArrayT = TypeVar('ArrayT', np.ndarray, torch.Tensor)  # what comes in is what goes out
SizeLike = Union[Sequence[float], np.ndarray, torch.Tensor]

__all__ = ['pixel_to_normalized', 'normalized_to_pixel', 'flip_coords', 'flip_maps']


def _check_xy(name: str, xy: ArrayLike) -> None:
    shape = tuple(xy.shape)
    if len(shape) < 1 or shape[-1] != 2:
        raise ValueError(f'{name} must have shape (..., 2), got {shape}')


def _as_float(xy: ArrayT) -> ArrayT:
    # _per_axis casts the size to xy's dtype: an integer xy would truncate a fractional size (7.5 -> 7).
    if isinstance(xy, torch.Tensor):
        return xy if xy.is_floating_point() else xy.float()
    xy = np.asarray(xy)
    return xy if np.issubdtype(xy.dtype, np.floating) else xy.astype(np.float64)


def _per_axis(values: SizeLike, like: ArrayLike) -> ArrayLike:
    """``values`` ((2,) or (..., 2), e.g. ``(w, h)``) as an array/tensor of ``like``'s type, dtype and device;
    sizes given as numbers must be > 0 (a tensor's are not read: that would wait for its device)."""
    if not isinstance(values, torch.Tensor) and not (np.asarray(values, dtype=float) > 0).all():
        raise ValueError(f'size must be (w, h) in pixels, each > 0, got {values!r}')  # else inf or a flipped map
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return np.asarray(values, dtype=like.dtype)


def pixel_to_normalized(xy: ArrayT, size: SizeLike) -> ArrayT:
    """Pixel coordinates to normalised coordinates.

    Args:
        xy: (..., 2) ``(x, y)`` in input pixels (pixel centres at integers).
        size: ``(w, h)`` of the input in pixels, or an array/tensor (..., 2) broadcastable against ``xy``.

    Returns:
        (..., 2) ``(u, v)`` in normalised units, same container type as ``xy`` (float).
    """
    _check_xy('xy', xy)
    xy = _as_float(xy)
    wh = _per_axis(size, xy)
    return (2 * xy + 1) / wh - 1


def normalized_to_pixel(uv: ArrayT, size: SizeLike) -> ArrayT:
    """Normalised coordinates to pixel coordinates; exact inverse of :func:`pixel_to_normalized`.

    Args:
        uv: (..., 2) ``(u, v)`` in normalised units.
        size: ``(w, h)`` of the input in pixels, or an array/tensor (..., 2) broadcastable against ``uv``.

    Returns:
        (..., 2) ``(x, y)`` in input pixels, same container type as ``uv`` (float).
    """
    _check_xy('uv', uv)
    uv = _as_float(uv)
    wh = _per_axis(size, uv)
    return ((uv + 1) * wh - 1) / 2


def flip_coords(coords: ArrayT, flip_indices: Union[Sequence[int], torch.Tensor]) -> ArrayT:
    """Map normalised keypoints predicted on a horizontally flipped input back to the original input.

    A horizontal flip is ``u -> -u`` in normalised coordinates (for both the ``'center'`` and the
    ``'mmpose'`` grids), and left/right joints swap names, hence the permutation.

    Args:
        coords: (..., K, 2) ``(u, v)`` in normalised units.
        flip_indices: length-K permutation; joint ``k`` of the output is joint ``flip_indices[k]`` of
            the input (a sequence, or an int64 tensor: on the coordinates' device, it costs no host copy).

    Returns:
        (..., K, 2) normalised coordinates, same container type as ``coords``.
    """
    _check_xy('coords', coords)
    shape = tuple(coords.shape)
    if len(shape) < 2 or shape[-2] != len(flip_indices):
        raise ValueError(f'coords must have shape (..., K, 2) with K = len(flip_indices) = '
                         f'{len(flip_indices)}, got {shape}')
    coords = _as_float(coords)
    # a tensor of indices on the coordinates' device indexes without a host-to-device copy (a list is copied,
    # blocking: a stream sync on a GPU); x is negated in place of a multiplication by a (-1, 1) tensor built on the
    # host, for the same reason (the same values: both are exact)
    if isinstance(coords, torch.Tensor):
        index, stack = _torch_index(flip_indices, coords.device), torch.stack
    else:
        index, stack = np.asarray(flip_indices, dtype=np.intp), np.stack
    flipped = coords[..., index, :]
    return stack((-flipped[..., 0], flipped[..., 1]), -1)


def flip_maps(maps: torch.Tensor, flip_indices: Union[Sequence[int], torch.Tensor]) -> torch.Tensor:
    """Map heatmaps predicted on a horizontally flipped input back to the original input: columns reversed,
    left/right joints swapped as :func:`flip_coords` swaps them.

    On the ``'center'`` grid this is exact, ``soft_argmax(flip_maps(m)) == flip_coords(soft_argmax(m))``; on the
    ``'mmpose'`` grid (``j / W``) reversed columns are not ``u -> -u``, and the result is off by a fraction of a cell.

    Args:
        maps: (B, K, H, W) maps of the flipped input (any values: logits or probabilities).
        flip_indices: length-K permutation, as for :func:`flip_coords`.

    Returns:
        (B, K, H, W) maps in the original input's frame.
    """
    if maps.dim() != 4 or maps.shape[1] != len(flip_indices):
        raise ValueError(f'maps must have shape (B, K, H, W) with K = len(flip_indices) = {len(flip_indices)}, '
                         f'got {tuple(maps.shape)}')
    return maps.flip(-1)[:, _torch_index(flip_indices, maps.device)]


def _torch_index(flip_indices: Union[Sequence[int], torch.Tensor], device: torch.device):
    """``flip_indices`` to index a tensor on ``device``: a tensor moved there (no-op where it already is), else
    a list."""
    return flip_indices.to(device) if isinstance(flip_indices, torch.Tensor) else list(flip_indices)

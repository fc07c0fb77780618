"""DSNT-convention keypoint codec: pixel coordinates <-> normalised coordinates in [-1, 1]."""
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from mmpose.codecs.base import BaseKeypointCodec
from mmpose.registry import KEYPOINT_CODECS
from torch import Tensor

from ..config_checks import is_whole_pair, refuse_merged_keys
from ..ops import gaussian_heatmaps, make_grid, normalized_to_pixel, pixel_to_normalized


def _require_array(method: str, name: str, value: object) -> None:
    """Refuse anything but a numpy array, naming the argument: mmpose codecs take numpy in ``encode``/``decode``
    (a Tensor failed later with an AttributeError on ``astype``, a list on ``ndim``)."""
    if not isinstance(value, np.ndarray):
        hint = ' (convert it with .detach().cpu().numpy())' if isinstance(value, Tensor) else ''
        raise TypeError(f'DSNTLabel.{method}: `{name}` must be a numpy array, got {type(value).__name__}{hint}')


def _check_keypoints(keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray]
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values.

    Args:
        keypoints (np.ndarray): (N, K, 2) input pixels; NaN or Inf allowed only where not visible.
        keypoints_visible (np.ndarray, optional): (N, K) visibility; > 0.5 counts as visible, all visible when None.

    Returns:
        tuple: keypoints (N, K, 2) float64, with each non-finite (invisible) keypoint replaced by pixel (0, 0), and
        visibility (N, K) bool (> 0.5).
    """
    _require_array('encode', 'keypoints', keypoints)
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f'DSNTLabel.encode: `keypoints` must have shape (N, K, 2), got {keypoints.shape}')
    if keypoints_visible is None:
        keypoints_visible = np.ones(keypoints.shape[:2], dtype=np.float32)
    _require_array('encode', 'keypoints_visible', keypoints_visible)
    if keypoints_visible.shape != keypoints.shape[:2]:
        raise ValueError('DSNTLabel.encode: `keypoints_visible` must have shape (N, K) = '
                         f'{keypoints.shape[:2]}, got {keypoints_visible.shape}')
    if not np.isfinite(keypoints_visible).all():  # NaN > 0.5 is False: it passed as 'not visible' without a word
        raise ValueError(f'DSNTLabel.encode: `keypoints_visible` of shape {keypoints_visible.shape} contains NaN '
                         'or Inf; a visibility is a number (0 or 1, or a score)')
    visible = keypoints_visible > 0.5
    finite = np.isfinite(keypoints).all(axis=-1)
    bad = np.argwhere(visible & ~finite)
    if len(bad):  # a visible keypoint must have a place; NaN marks a missing one, which must not count as seen
        n, k = bad[0]
        raise ValueError(f'DSNTLabel.encode: `keypoints` of shape {keypoints.shape} contains NaN or Inf at '
                         f'{len(bad)} visible keypoint(s) (visibility > 0.5), the first at instance {n}, keypoint '
                         f'{k}: {keypoints[n, k].tolist()}')
    # NaN (or Inf) marks a missing keypoint; it gets weight 0 (it is not visible) and the label of pixel (0, 0),
    # where mmpose's datasets put unlabelled keypoints, so no NaN reaches the labels, the heatmaps or a loss.
    keypoints = np.where(finite[..., None], keypoints.astype(np.float64), 0.0)
    return keypoints, visible


@KEYPOINT_CODECS.register_module()
class DSNTLabel(BaseKeypointCodec):
    """Normalised-coordinate labels in the DSNT convention, optionally with Gaussian heatmap targets.

    Pixel ``i`` of the input has its centre at ``x = i``; the input spans ``[-0.5, w - 0.5]``, which maps to
    ``[-1, 1]`` by ``u = (2x + 1) / w - 1``. A horizontal flip of the input (``x -> w - 1 - x``) is exactly
    ``u -> -u``, so flip test needs no shift.

    Note:
        - instance number: N
        - keypoint number: K

    Encoded:
        - keypoint_labels (np.ndarray): (N, K, 2) float32, normalised (x, y) in [-1, 1] for points inside.
        - keypoint_weights (np.ndarray): (N, K) float32, 1 where the keypoint is visible and inside the input.
        - heatmaps (np.ndarray): (K, H, W) float32, only with ``heatmap_size`` and ``sigma``: a Gaussian at the
          exact sub-pixel location (not rounded to a cell), sampled at the cell centres (``grid='center'``,
          whatever the head's grid), each map summing to 1 (zero for unlabelled keypoints). With N > 1
          instances the maps are the per-cell maximum over instances, renormalised.

    Args:
        input_size (tuple[int, int]): Model input size (w, h) in pixels.
        heatmap_size (tuple[int, int], optional): Heatmap size (W, H) in cells for heatmap targets.
        sigma (float, optional): Standard deviation of the Gaussian targets, in heatmap cells.
        use_udp (bool): The pipeline's ``TopdownAffine`` has ``use_udp=True`` (unbiased data processing, as in
            mmpose's ``*_udp`` configs). Its crops put pixel 0 and ``w - 1`` on the box's edges, while mmpose's
            ``TopdownPoseEstimator`` maps predictions back with the other convention (``x / w`` of the box), so
            decoding then returns ``x * w / (w - 1)`` (and ``h / (h - 1)`` for y), as mmpose's UDP codecs do.
            Labels are unchanged. Default False: a UDP pipeline without it shrinks every prediction towards the
            box's top-left corner by a factor ``(w - 1) / w``, up to a crop pixel at the far side.
        **merged: none is taken: keys of an inherited config's codec (``_delete_=True`` missing) are refused.
    """

    label_mapping_table = dict(keypoint_labels='keypoint_labels', keypoint_weights='keypoint_weights')

    def __init__(self,
                 input_size: Tuple[int, int],
                 heatmap_size: Optional[Tuple[int, int]] = None,
                 sigma: Optional[float] = None,
                 use_udp: bool = False,
                 **merged) -> None:
        refuse_merged_keys('DSNTLabel', merged)
        super().__init__()
        if not is_whole_pair(input_size):  # a bare 192 failed on len(), (192.7, 256) was cut to 192
            raise ValueError(f'DSNTLabel: `input_size` must be (w, h), two whole numbers of pixels > 0, got '
                             f'{input_size!r}')
        if (heatmap_size is None) != (sigma is None):
            raise ValueError('DSNTLabel: heatmap targets need both `heatmap_size` and `sigma`, got '
                             f'heatmap_size={heatmap_size}, sigma={sigma}')
        if heatmap_size is not None and (not is_whole_pair(heatmap_size) or not sigma > 0):
            raise ValueError(f'DSNTLabel: `heatmap_size` must be (W, H) > 0 and `sigma` > 0 (heatmap cells), got '
                             f'heatmap_size={heatmap_size}, sigma={sigma}')
        self.input_size = tuple(int(s) for s in input_size)
        if use_udp and min(self.input_size) < 2:
            raise ValueError(f'DSNTLabel: `use_udp` needs an input of at least 2 x 2 pixels, got {self.input_size}')
        self.use_udp = bool(use_udp)
        self.heatmap_size = None if heatmap_size is None else tuple(int(s) for s in heatmap_size)
        self.sigma = sigma
        # An instance attribute, so PackPoseInputs packs heatmaps only when this codec makes them.
        self.field_mapping_table = dict(heatmaps='heatmaps') if self.heatmap_size else dict()

    def encode(self, keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray] = None) -> dict:
        """Encode input-space keypoints.

        Args:
            keypoints (np.ndarray): (N, K, 2) keypoints in input pixels. NaN or Inf may mark a keypoint that is not
                visible: it gets weight 0, no heatmap, and the label of pixel (0, 0).
            keypoints_visible (np.ndarray, optional): (N, K) visibility; > 0.5 counts as visible.

        Returns:
            dict: ``keypoint_labels``, ``keypoint_weights`` and, when configured, ``heatmaps`` (see class doc).

        Raises:
            TypeError: an argument that is no numpy array (a Tensor, say).
            ValueError: a wrong shape, or NaN or Inf at a visible keypoint.
        """
        keypoints, visible = _check_keypoints(keypoints, keypoints_visible)
        labels = pixel_to_normalized(keypoints, self.input_size).astype(np.float32)
        inside = (np.abs(labels) <= 1.0).all(axis=-1)
        weights = (visible & inside).astype(np.float32)
        encoded = dict(keypoint_labels=labels, keypoint_weights=weights)
        if self.heatmap_size is not None:
            encoded['heatmaps'] = self._heatmaps(labels, weights)
        return encoded

    def _heatmaps(self, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
        W, H = self.heatmap_size
        grid_x, grid_y = make_grid(W, dtype=torch.float64), make_grid(H, dtype=torch.float64)
        maps = gaussian_heatmaps(torch.from_numpy(labels.astype(np.float64)), grid_x, grid_y, self.sigma)
        maps = maps * torch.from_numpy(weights.astype(np.float64))[..., None, None]
        # no instance (N = 0): zero maps, the same as an instance with no labelled keypoint
        maps = maps.amax(dim=0) if len(maps) else maps.new_zeros(maps.shape[1:])
        total = maps.sum(dim=(-1, -2), keepdim=True)
        maps = torch.where(total > 0, maps / total.clamp_min(1e-300), torch.zeros_like(maps))
        return maps.numpy().astype(np.float32)

    def decode(self, encoded: np.ndarray, scores: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Decode normalised coordinates of one sample.

        Args:
            encoded (np.ndarray): (N, K, 2) normalised coordinates.
            scores (np.ndarray, optional): (N, K) keypoint scores; ones when absent.

        Returns:
            tuple: keypoints (N, K, 2) float32 in input-crop pixels (pixel centres at integers; with ``use_udp``
            scaled by (w / (w - 1), h / (h - 1)), as mmpose's back-transform expects) and scores (N, K) float32.

        Raises:
            TypeError: an argument that is no numpy array (a Tensor: :meth:`batch_decode` takes those).
            ValueError: ``encoded`` not (N, K, 2), or ``scores`` not (N, K) of the same N and K.
        """
        _require_array('decode', 'encoded', encoded)
        if encoded.ndim != 3 or encoded.shape[-1] != 2:
            raise ValueError(f'DSNTLabel.decode: `encoded` must have shape (N, K, 2), got {encoded.shape}')
        keypoints = self._for_back_transform(normalized_to_pixel(encoded.astype(np.float64), self.input_size))
        if scores is None:
            scores = np.ones(encoded.shape[:2], dtype=np.float32)
        _require_array('decode', 'scores', scores)
        # (K,) is refused too, not broadcast: the docstring promises (N, K) scores, one per returned keypoint
        if scores.shape != encoded.shape[:2]:
            raise ValueError(f'DSNTLabel.decode: `scores` must have shape (N, K) = {encoded.shape[:2]} of `encoded` '
                             f'{encoded.shape}, got {scores.shape}')
        return keypoints, scores.astype(np.float32)

    def batch_decode(self,
                     batch_coords: Union[Tensor, np.ndarray],
                     batch_scores: Optional[Union[Tensor, np.ndarray]] = None
                     ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        """Decode a batch in one step (one device-to-host copy for the whole batch).

        Args:
            batch_coords (Tensor | np.ndarray): (B, N, K, 2) normalised coordinates.
            batch_scores (Tensor | np.ndarray, optional): (B, N, K) scores; ones when absent.

        Returns:
            tuple: lists of B keypoint arrays (N, K, 2) in input-crop pixels (as :meth:`decode` gives them) and B
            score arrays (N, K).

        Raises:
            ValueError: ``batch_coords`` not (B, N, K, 2), or ``batch_scores`` not (B, N, K) of the same B, N, K.
        """
        coords = torch.as_tensor(batch_coords)
        if coords.ndim != 4 or coords.shape[-1] != 2:
            raise ValueError(f'DSNTLabel.batch_decode: `batch_coords` must have shape (B, N, K, 2), '
                             f'got {tuple(coords.shape)}')
        pixels = normalized_to_pixel(coords.detach().float(), self.input_size).cpu().numpy()
        keypoints = self._for_back_transform(pixels)
        if batch_scores is None:
            scores = np.ones(keypoints.shape[:3], dtype=np.float32)
        else:
            scores = torch.as_tensor(batch_scores).detach().float().cpu().numpy()
            if scores.shape != keypoints.shape[:3]:  # one score per keypoint: list() would pair them up wrongly
                raise ValueError(f'DSNTLabel.batch_decode: `batch_scores` must have shape (B, N, K) = '
                                 f'{keypoints.shape[:3]} of `batch_coords` {tuple(coords.shape)}, got {scores.shape}')
        return list(keypoints), list(scores)

    def _for_back_transform(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., 2) crop pixels as mmpose's back-transform expects them, float32: as they are, or times w/(w-1),
        h/(h-1) with ``use_udp`` (see the class doc)."""
        if self.use_udp:
            w, h = self.input_size
            keypoints = keypoints * np.array([w / (w - 1), h / (h - 1)])
        return keypoints.astype(np.float32)

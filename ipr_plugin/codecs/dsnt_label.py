"""DSNT-convention keypoint codec: pixel coordinates <-> normalised coordinates in [-1, 1]."""
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from mmpose.codecs.base import BaseKeypointCodec
from mmpose.registry import KEYPOINT_CODECS
from torch import Tensor

from ..config_checks import is_whole_pair, refuse_merged_keys
from ..ops import gaussian_heatmaps, make_grid, normalized_to_pixel, pixel_to_normalized


def _check_keypoints(keypoints: np.ndarray, keypoints_visible: Optional[np.ndarray]) -> np.ndarray:
    """Validate shapes and values; return visibility as (N, K) float32."""
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f'DSNTLabel.encode: `keypoints` must have shape (N, K, 2), got {keypoints.shape}')
    if keypoints_visible is None:
        keypoints_visible = np.ones(keypoints.shape[:2], dtype=np.float32)
    if keypoints_visible.shape != keypoints.shape[:2]:
        raise ValueError('DSNTLabel.encode: `keypoints_visible` must have shape (N, K) = '
                         f'{keypoints.shape[:2]}, got {keypoints_visible.shape}')
    if not np.isfinite(keypoints).all():
        raise ValueError(f'DSNTLabel.encode: `keypoints` of shape {keypoints.shape} contains NaN or Inf')
    return keypoints_visible.astype(np.float32)


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
            keypoints (np.ndarray): (N, K, 2) keypoints in input pixels.
            keypoints_visible (np.ndarray, optional): (N, K) visibility; > 0.5 counts as visible.

        Returns:
            dict: ``keypoint_labels``, ``keypoint_weights`` and, when configured, ``heatmaps`` (see class doc).
        """
        visible = _check_keypoints(keypoints, keypoints_visible)
        labels = pixel_to_normalized(keypoints.astype(np.float64), self.input_size).astype(np.float32)
        inside = (np.abs(labels) <= 1.0).all(axis=-1)
        weights = ((visible > 0.5) & inside).astype(np.float32)
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
            scaled by (w / (w - 1), h / (h - 1)), as mmpose's back-transform expects) and scores (N, K).
        """
        if encoded.ndim != 3 or encoded.shape[-1] != 2:
            raise ValueError(f'DSNTLabel.decode: `encoded` must have shape (N, K, 2), got {encoded.shape}')
        keypoints = self._for_back_transform(normalized_to_pixel(encoded.astype(np.float64), self.input_size))
        if scores is None:
            scores = np.ones(encoded.shape[:2], dtype=np.float32)
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
        return list(keypoints), list(scores)

    def _for_back_transform(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., 2) crop pixels as mmpose's back-transform expects them, float32: as they are, or times w/(w-1),
        h/(h-1) with ``use_udp`` (see the class doc)."""
        if self.use_udp:
            w, h = self.input_size
            keypoints = keypoints * np.array([w / (w - 1), h / (h - 1)])
        return keypoints.astype(np.float32)

"""Integral (soft-argmax) regression head with exact cell-centre grids, debias and real keypoint scores."""
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmpose.models.heads import HeatmapHead
from mmpose.models.heads.base_head import BaseHead
from mmpose.registry import KEYPOINT_CODECS, MODELS
from mmpose.utils.typing import ConfigType, OptConfigType, OptSampleList, Predictions
from torch import Tensor, nn

from ...ops import (debias_from_share, flip_coords, flip_maps, keypoint_scores, log_background_share, make_grid,
                    normalize_heatmaps, soft_argmax)
from ...ops.integral import MAX_BACKGROUND
from ...ops.losses import mask_unweighted_targets, pck_accuracy, weighted_joint_mean
from ...config_checks import refuse_merged_keys
from .head_inputs import (LABEL_CHECK_COUNT, build_loss, check_arguments, check_decoder, check_features,
                          check_input_size, check_label_convention, coordinate_loss_weights, dataset_joints_problem,
                          loss_takes_maps, training_labels)
from .mmpose_checkpoints import add_linspace, drop_linspace, from_heatmap_head, mmpose_linspace

OptIntSeq = Optional[Sequence[int]]


@MODELS.register_module()
class IPRHead(BaseHead):
    """Top-down integral regression head (Sun et al., ECCV 2018).

    Logits from a SimpleBaseline deconv stack (or straight from the backbone) are normalised per keypoint into
    probability maps, and the coordinates are their expectation over the head's grid (cell centres by default),
    in the DSNT convention of :class:`DSNTLabel` (``u = (2x + 1) / w - 1``; flip is ``u -> -u``).

    Shapes: B batch, K = ``num_joints``, (H, W) heatmap size in cells.

    Args:
        in_channels (int): Channels of the last backbone feature map.
        in_featuremap_size (tuple[int, int]): (w, h) of that feature map, in cells.
        num_joints (int): K.
        deconv_out_channels (sequence[int], optional): Deconv stack channels (mmpose's default 3 x 256, each
            doubling the resolution); ``None`` for no deconv stack.
        deconv_kernel_sizes (sequence[int], optional): Kernel size of each deconv layer.
        conv_out_channels, conv_kernel_sizes: Optional intermediate convs, as in mmpose's ``HeatmapHead``.
        final_layer (dict, optional): The final conv to K maps (``dict(kernel_size=1)``); ``None`` uses the
            incoming maps as the logits (they must then have K channels).
        normalizer (str): ``'softmax'`` (default), ``'relu'`` or ``'abs'`` (the IPR paper's alternatives).
        beta (float): Logit scale before normalising.
        learnable_beta (bool): Learn beta (kept positive through softplus), starting at ``beta``.
        debias (bool): Remove the soft-argmax's pull towards the centre (Gu et al., ICCV 2021); softmax only.
            Training then also logs ``debias_r``, the mean background share the correction assumes, and
            ``debias_capped``, the share of maps where it is capped (not exact), both over labelled keypoints.
        debias_background (str): The background logit level debias assumes: ``'zero'`` (the paper's and
            mmpose's) or ``'median'`` (each map's median logit: blind to a common shift of the logits, as
            the softmax is). See :func:`ipr_plugin.ops.debias_coords` (applied in two steps,
            :func:`~ipr_plugin.ops.log_background_share` and :func:`~ipr_plugin.ops.debias_from_share`).
        debias_max_background (float): Cap of the background share debias works with, in (0, 1): above it
            the correction is not exact and amplifies offsets from the grid mean by ``1 / (1 - cap)``.
        debias_clamp_in_loss (bool): Clamp the debiased coordinates to the grid's range in the loss too,
            as in prediction (default). Where the share is capped and the amplified coordinate passes the last
            grid point the clamped keypoint then has no gradient; ``False`` trains on the unclamped value.
        grid (str): ``'center'`` (cell centres, exact) or ``'mmpose'`` (mmpose 1.3.2's ``j / W`` grid, to
            reproduce its released models' coordinates; needs ``decoder`` for the input size).
        score_radius (float): A keypoint's score is the probability mass within this many heatmap cells of its
            predicted location: near 1 for a sharp, unimodal map, near ``pi r^2 / (H W)`` for a flat one.
        loss (dict): Loss config (:class:`IntegralL1Loss`, :class:`IntegralJointLoss`, or one of mmpose's
            coordinate losses such as ``SmoothL1Loss``, given (B, K, 2) coordinates in [-1, 1], labels and
            weights, its result logged as ``loss_kpt``).
        decoder (dict, optional): Codec config (:class:`DSNTLabel`) used to decode predictions.
        init_cfg (dict, optional): Initialisation config.
        **merged: none is taken: keys merged in from an inherited config's head (``_delete_=True`` missing) are
            refused by name.
    """

    def __init__(self,
                 in_channels: int,
                 in_featuremap_size: Tuple[int, int],
                 num_joints: int,
                 deconv_out_channels: OptIntSeq = (256, 256, 256),
                 deconv_kernel_sizes: OptIntSeq = (4, 4, 4),
                 conv_out_channels: OptIntSeq = None,
                 conv_kernel_sizes: OptIntSeq = None,
                 final_layer: Optional[dict] = dict(kernel_size=1),
                 normalizer: str = 'softmax',
                 beta: float = 1.0,
                 learnable_beta: bool = False,
                 debias: bool = False,
                 debias_background: str = 'zero',
                 debias_max_background: float = MAX_BACKGROUND,
                 debias_clamp_in_loss: bool = True,
                 grid: str = 'center',
                 score_radius: float = 2.0,
                 loss: ConfigType = dict(type='IntegralL1Loss'),
                 decoder: OptConfigType = None,
                 init_cfg: OptConfigType = None,
                 **merged):
        refuse_merged_keys('IPRHead', merged)
        super().__init__(init_cfg if init_cfg is not None else
                         [dict(type='Normal', layer=['Conv2d'], std=0.001)])
        check_arguments(in_channels=in_channels, in_featuremap_size=in_featuremap_size, num_joints=num_joints,
                        normalizer=normalizer, beta=beta, learnable_beta=learnable_beta, score_radius=score_radius,
                        debias=debias, debias_background=debias_background,
                        debias_max_background=debias_max_background, grid=grid, decoder=decoder)
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.normalizer = normalizer
        self.debias = debias
        self.debias_background = debias_background
        self.debias_max_background = float(debias_max_background)
        self.debias_clamp_in_loss = bool(debias_clamp_in_loss)
        self.grid_mode = grid
        self.score_radius = score_radius
        self.loss_module = build_loss(loss)
        # mmpose's own coordinate losses (SmoothL1Loss, L1Loss, ...) take (output, target, weight) and return one
        # tensor; ours also take the maps and return each term under its own key
        self._loss_takes_maps = loss_takes_maps(self.loss_module)
        # a codec built in Python is taken as it is
        self.decoder = KEYPOINT_CODECS.build(decoder) if isinstance(decoder, dict) else decoder
        check_decoder(self.decoder)
        self._label_tally = (0, math.inf)  # the label convention's check (check_label_convention)
        self._flip_index: Tuple[tuple, Optional[Tensor]] = ((), None)  # the flip test's, on the device (_flip_test)
        self._joints_warned = False  # dataset_joints_problem, without flip test
        self._map_size_warned = False  # _warn_map_size

        # Same module names as mmpose's IntegralRegressionHead, so its state dicts load strictly. Unlike it, convs
        # without deconvs are built too, as HeatmapHead builds them (mmpose's integral head drops them without a
        # word, so its checkpoints of such a config are refused by name: mmpose_checkpoints.from_heatmap_head).
        num_deconv = len(deconv_out_channels) if deconv_out_channels else 0
        self.simplebaseline_head = None
        self.final_layer = None
        if num_deconv or conv_out_channels:
            self.simplebaseline_head = HeatmapHead(
                in_channels=in_channels, out_channels=num_joints, deconv_out_channels=deconv_out_channels,
                deconv_kernel_sizes=deconv_kernel_sizes, conv_out_channels=conv_out_channels,
                conv_kernel_sizes=conv_kernel_sizes, final_layer=final_layer)
        elif final_layer is not None:
            # final_layer's own kernel_size (its default dict has one) replaces the 1x1, as in mmpose's heads
            self.final_layer = build_conv_layer(
                dict(dict(type='Conv2d', in_channels=in_channels, out_channels=num_joints, kernel_size=1),
                     **final_layer))
        self.heatmap_size = tuple(int(s) * 2**num_deconv for s in in_featuremap_size)

        if learnable_beta:
            # softplus^-1(beta), so the learnt value starts at `beta` and stays positive.
            self.beta_raw = nn.Parameter(torch.tensor(math.log(math.expm1(beta))))
        else:
            self.beta_raw = None
            self.beta_value = float(beta)
        # Grids are derived, not learnt: non-persistent, so loading does not depend on the heatmap size. State
        # dicts carry them in mmpose's form for mmpose's heads (see mmpose_checkpoints).
        W, H = self.heatmap_size
        self.register_buffer('grid_x', self._make_grid(W, 0), persistent=False)
        self.register_buffer('grid_y', self._make_grid(H, 1), persistent=False)
        self._register_load_state_dict_pre_hook(drop_linspace, with_module=True)
        self._register_load_state_dict_pre_hook(from_heatmap_head, with_module=True)
        self._register_state_dict_hook(add_linspace)

    # ------------------------------------------------------------------ forward
    @property
    def beta(self) -> Union[float, Tensor]:
        """The logit scale: the configured float, or a positive 0-d tensor when learnt."""
        return F.softplus(self.beta_raw) if self.beta_raw is not None else self.beta_value

    def _make_grid(self, size: int, axis: int, device=None) -> Tensor:
        input_size = self.decoder.input_size[axis] if self.grid_mode == 'mmpose' else None
        return make_grid(size, self.grid_mode, input_size=input_size, device=device)

    def _apply(self, fn, *args, **kwargs):
        # .half() / .bfloat16() would round the derived grids (48 cells, 192 px: up to 1/64 px in fp16, 1/8 px in
        # bf16), and the ops integrate in float32: rebuild them exactly on the new device instead.
        super()._apply(fn, *args, **kwargs)
        if torch.finfo(self.grid_x.dtype).bits < 32:
            (W, H), device = self.heatmap_size, self.grid_x.device
            self.grid_x, self.grid_y = self._make_grid(W, 0, device), self._make_grid(H, 1, device)
        return self

    def grids_for(self, logits: Tensor) -> Tuple[Tensor, Tensor]:
        """The (W,) and (H,) normalised grids (``make_grid(mode=grid)``) for these (B, K, H, W) logits, on their
        device (rebuilt when the runtime heatmap size differs)."""
        H, W = logits.shape[-2:]
        grid_x = self.grid_x if self.grid_x.numel() == W else self._make_grid(W, 0, logits.device)
        grid_y = self.grid_y if self.grid_y.numel() == H else self._make_grid(H, 1, logits.device)
        return grid_x.to(logits.device), grid_y.to(logits.device)

    def _warn_map_size(self, logits: Tensor) -> None:
        """Warn once when training or predicting on maps of another size than configured: maps cropped by an
        unpadded final conv, or a wrong ``in_featuremap_size``, would be stretched over the input. (Not in
        :meth:`forward`: an export at another input size than the decoder's is a valid reason.)"""
        H, W = logits.shape[-2:]
        if (W, H) != self.heatmap_size and not self._map_size_warned:
            self._map_size_warned = True
            print_log(f'IPRHead: the maps are {W}x{H} (w x h), configured {self.heatmap_size[0]}x'
                      f'{self.heatmap_size[1]} (in_featuremap_size x 2^deconvs): check in_featuremap_size (w, h) and '
                      'that the final conv keeps the size (padding); the grids follow the maps', logger='current',
                      level=logging.WARNING)

    def scores(self, probs: Tensor, coords: Tensor) -> Tensor:
        """(B, K) keypoint scores in [0, 1]: each (B, K, H, W) map's mass within ``score_radius`` cells of its
        (B, K, 2) normalised keypoint (:func:`ipr_plugin.ops.keypoint_scores`)."""
        grid_x, grid_y = self.grids_for(probs)
        return keypoint_scores(probs, coords, grid_x, grid_y, self.score_radius)

    def logits(self, feats: Sequence[Tensor]) -> Tensor:
        """(B, K, H, W) logits from the backbone's (or neck's) features, a tuple of (B, C, h, w) maps of which the
        last is used (C = ``in_channels``; H, W = ``heatmap_size`` reversed, e.g. h, w times 8 after 3 deconvs)."""
        check_features(feats)
        if self.simplebaseline_head is not None:
            x = self.simplebaseline_head(feats)
        else:
            x = feats[-1]
            if self.final_layer is not None:
                x = self.final_layer(x)
        if x.ndim != 4 or x.shape[1] != self.num_joints:
            raise ValueError(f'IPRHead: logits must have shape (B, num_joints={self.num_joints}, H, W), got '
                             f'{tuple(x.shape)}')
        return x

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        """Soft-argmax over the logits of ``feats`` (as :meth:`logits`).

        Returns:
            tuple: coords (B, K, 2) normalised (x, y); probability maps (B, K, H, W); float32 (float64 for a
            float64 head), also under autocast.
        """
        return self._integrate(self.logits(feats))[:2]

    def _integrate(self, logits: Tensor, clamp: bool = True) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Coords (B, K, 2) and probability maps (B, K, H, W), as :meth:`forward`; with debias also the
        (B, K) ``log r`` the correction used (:func:`ipr_plugin.ops.log_background_share`), else None.
        ``clamp``: the debiased coords clamped to the grid's range."""
        grid_x, grid_y = self.grids_for(logits)
        probs = normalize_heatmaps(logits, self.normalizer, self.beta)
        coords = soft_argmax(probs, grid_x, grid_y)
        log_share = None
        if self.debias:
            log_share = log_background_share(logits, self.beta, self.debias_background)
            coords = debias_from_share(coords, log_share, grid_x, grid_y, self.debias_max_background, clamp)
        return coords, probs, log_share

    # ------------------------------------------------------------------ predict
    def predict(self,
                feats: Union[Sequence[Tensor], List[Sequence[Tensor]]],
                batch_data_samples: OptSampleList,
                test_cfg: ConfigType = {}) -> Predictions:
        """Predict input-space keypoints with real per-keypoint scores.

        With ``test_cfg['flip_test']`` ``feats`` is ``[feats, feats_of_flipped_input]``: the flipped pass's
        coordinates are mirrored exactly (``u -> -u``, joints swapped by ``flip_indices``) and its maps
        mirrored, then both are averaged; the scores are each pass's own map scored at the averaged keypoint,
        averaged (on the ``'mmpose'`` grid a mirrored map is off by a fraction of a cell, so the returned
        averaged maps are approximate there). ``test_cfg['output_heatmaps']`` also returns the probability maps;
        ``test_cfg['keypoint_scores'] = 'ones'`` reports constant scores (an ablation of the real ones).

        Returns:
            list[InstanceData] with ``keypoints`` (1, K, 2) in input-crop pixels (:meth:`DSNTLabel.decode`) and
            ``keypoint_scores`` (1, K) in [0, 1]; with ``output_heatmaps`` also a list of
            ``PixelData(heatmaps=(K, H, W))``.
        """
        check_input_size(batch_data_samples, self.decoder)
        joints_problem = dataset_joints_problem(batch_data_samples, self.num_joints)
        if test_cfg.get('flip_test', False):
            if joints_problem:
                raise ValueError(joints_problem)
            if not (isinstance(feats, list) and len(feats) == 2):
                raise ValueError('IPRHead.predict: flip_test expects feats = [feats, flipped_feats]')
            logits, coords, probs, scores, finite = self._flip_test(
                feats, batch_data_samples[0].metainfo['flip_indices'])
        else:
            if joints_problem and not self._joints_warned:  # once: an evaluator's pred_converter may map them
                self._joints_warned = True
                print_log(f'{joints_problem} (unless the evaluator converts them, pred_converter)', logger='current',
                          level=logging.WARNING)
            logits = self.logits(feats)
            coords, probs, _ = self._integrate(logits)
            scores = self.scores(probs, coords)
            finite = torch.isfinite(logits).all()
        self._warn_map_size(logits)
        score_mode = test_cfg.get('keypoint_scores', 'mass')
        if score_mode not in ('mass', 'ones'):  # a misspelt ablation would silently report the real scores
            raise ValueError(f"IPRHead: test_cfg['keypoint_scores'] must be 'mass' or 'ones', got {score_mode!r}")
        if score_mode == 'ones':  # ablation: what mmpose's heads report
            scores = torch.ones_like(scores)
        # Checked once, after all of the batch's work is queued: decoding waits for the device right after, so
        # this costs no extra stall (a check per pass would idle the GPU while the second pass is queued).
        if not finite:
            raise ValueError(f'IPRHead: logits of shape {tuple(logits.shape)} contain NaN or Inf')
        preds = self.decode((coords.unsqueeze(1), scores.unsqueeze(1)))
        if test_cfg.get('output_heatmaps', False):
            return preds, [PixelData(heatmaps=hm) for hm in probs.detach()]
        return preds

    def _flip_test(self, feats: List[Sequence[Tensor]], flip_indices: List[int]) -> Tuple[Tensor, ...]:
        """Both passes of a flip test, merged in the unflipped frame.

        Returns:
            tuple: the first pass's ``logits`` (B, K, H, W) (for error messages), averaged ``coords`` (B, K, 2)
            in [-1, 1], averaged ``probs`` (B, K, H, W), averaged ``scores`` (B, K), and ``finite`` (a 0-dim
            bool tensor, left on the device: whether both passes' logits are finite).
        """
        logits, logits_f = self.logits(feats[0]), self.logits(feats[1])
        # the joint permutation as a tensor on the device, made once: a Python list index is copied to the device
        # at every use, blocking (a stream sync per use on a GPU)
        key = (tuple(flip_indices), logits.device)
        if self._flip_index[0] != key:
            self._flip_index = (key, torch.tensor(key[0], device=logits.device))
        flip = self._flip_index[1]
        coords, probs, _ = self._integrate(logits)
        coords_f, probs_f, _ = self._integrate(logits_f)
        coords = (coords + flip_coords(coords_f, flip)) * 0.5
        # Each pass's map is scored in its own frame, at the averaged keypoint (mirrored for the flipped pass): on
        # the 'mmpose' grid u -> -u is not a flip of the cells, so a mirrored map would be off by a fraction of a
        # cell; on the 'center' grid this equals scoring the averaged map (the score is linear in the map).
        scores = 0.5 * (self.scores(probs, coords)
                        + self.scores(probs_f, flip_coords(coords, flip))[:, flip])
        probs = (probs + flip_maps(probs_f, flip)) * 0.5
        finite = torch.isfinite(logits).all() & torch.isfinite(logits_f).all()
        return logits, coords, probs, scores, finite

    # ------------------------------------------------------------------ loss
    def loss(self,
             feats: Sequence[Tensor],
             batch_data_samples: OptSampleList,
             train_cfg: ConfigType = {}) -> Dict[str, Tensor]:
        """Losses and a device-side PCK accuracy, with no host sync (after the first batches' check of the label
        convention, :func:`check_label_convention`).

        Args:
            feats: as for :meth:`logits`.
            batch_data_samples: B samples with ``gt_instance_labels.keypoint_labels`` (1, K, 2) in [-1, 1]
                (:class:`DSNTLabel`) and ``keypoint_weights`` (1, K).

        Returns:
            dict: 0-d tensors: ``loss_kpt`` (or each term of the loss under its own key), ``acc_pose`` (PCK at
            0.1 normalised units), ``beta`` when learnt, and with debias ``debias_r`` and ``debias_capped``.
        """
        check_input_size(batch_data_samples, self.decoder)  # before the forward pass: it needs the metainfo only
        logits = self.logits(feats)
        self._warn_map_size(logits)
        coords, probs, log_share = self._integrate(logits, clamp=self.debias_clamp_in_loss)
        labels, weights = training_labels(batch_data_samples)
        if labels.shape != coords.shape:
            raise ValueError(f'IPRHead.loss: `keypoint_labels` has shape {tuple(labels.shape)}, the head '
                             f'predicts {tuple(coords.shape)} (num_joints={self.num_joints})')
        if weights.shape != coords.shape[:2]:
            raise ValueError(f'IPRHead.loss: `keypoint_weights` has shape {tuple(weights.shape)}, expected '
                             f'{tuple(coords.shape[:2])}')
        labels, weights = labels.to(coords.device), weights.to(coords.device)
        if self._label_tally[0] < LABEL_CHECK_COUNT:
            self._label_tally = check_label_convention(labels, weights, self._label_tally, LABEL_CHECK_COUNT)
        if self._loss_takes_maps:
            losses = dict(self.loss_module(coords, labels, weights, heatmaps=probs, grids=self.grids_for(probs)))
        else:
            value = self.loss_module(coords, mask_unweighted_targets(labels, coords, weights),
                                     coordinate_loss_weights(self.loss_module, weights))
            losses = dict(value) if isinstance(value, dict) else dict(loss_kpt=value)
        losses['acc_pose'] = pck_accuracy(coords.detach(), labels, weights)
        if self.beta_raw is not None:
            losses['beta'] = self.beta.detach()
        if log_share is not None:  # over the keypoints the loss sees: unlabelled ones have no reason to peak
            with torch.no_grad():
                share = log_share.detach().exp()
                # plain means over the labelled keypoints: an unlabelled map far below level 0 has r = inf, which
                # the mean selects out (not multiplied by 0, which is NaN); fractional weights do not weigh here
                labelled = (weights > 0).to(share.dtype)
                losses['debias_r'] = weighted_joint_mean(share, labelled)
                losses['debias_capped'] = weighted_joint_mean((share > self.debias_max_background).to(share.dtype),
                                                              labelled)
        return losses

    # ------------------------------------------------------------------ checkpoints
    def mmpose_linspace(self, axis: int) -> Optional[Tensor]:
        """The x (``axis`` 0) or y grid as mmpose's heads store it (:func:`.mmpose_checkpoints.mmpose_linspace`);
        None without a decoder, whose input size it needs."""
        if self.decoder is None:
            return None
        # built on the CPU in float64 (as the device may have no float64, or be 'meta'), from the configured size
        input_size = self.decoder.input_size[axis]
        grid = make_grid(self.heatmap_size[axis], self.grid_mode, dtype=torch.float64,
                         input_size=input_size if self.grid_mode == 'mmpose' else None)
        return mmpose_linspace(grid, input_size, axis)

    # what a model pickled whole (torch.save(model)) with the loading hooks as methods calls
    def _drop_mmpose_linspace(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        drop_linspace(self, state_dict, prefix)

    def _from_heatmap_head(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        from_heatmap_head(self, state_dict, prefix)

"""ONNX export of a top-down IPR pose model, with normalisation, soft-argmax and keypoint scores in the graph.

The exported graph (:class:`IPRExportModule`):

* input ``image``: (B, 3, H, W) float32 pixel values in [0, 255] of the person crop, already warped to the
  model's input size (mmpose's ``TopdownAffine``), in the channel order the backbone was trained on: RGB for
  configs whose data preprocessor has ``bgr_to_rgb=True`` (all of this plugin's), i.e. the BGR image mmpose
  loads, flipped. The data preprocessor's mean/std are applied inside the graph.
* output ``keypoints``: (B, K, 2) ``(u, v)`` in normalised crop coordinates, DSNT convention
  (:mod:`ipr_plugin.ops.coords`): crop pixel ``x = ((u + 1) w - 1) / 2``, ``y = ((v + 1) h - 1) / 2``.
* output ``scores``: (B, K) in [0, 1], the probability mass within ``head.score_radius`` heatmap cells of
  each keypoint (:func:`ipr_plugin.ops.keypoint_scores`), as ``IPRHead.predict`` reports.

The batch axis is dynamic unless ``dynamic_batch=False``. There is no flip test in the graph (run the
flipped crop as a second batch item and mirror it yourself: ``u -> -u`` and the dataset's ``flip_indices``).
The graph's ``metadata_props`` record the input size, channel order and coordinate convention, and whether the
crop is a UDP one (``crop``: ``'udp'`` when the codec has ``use_udp``: pixel 0 and ``w - 1`` on the box's edges).

The TorchScript exporter (``dynamo=False``) is used: torch's default ``torch.export``-based exporter needs
``onnxscript``, which the pinned environment does not install, and the traced graph is static apart from
the batch axis anyway (torch before 2.5 has only that exporter, and no ``dynamo`` argument).
"""
import importlib
import inspect
import os
import os.path as osp
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..arguments import check_out_file, is_url, raise_problems, written_whole
from ..config_checks import building_model, is_whole_pair
from ..paths import ConfigLike, link_note, load_config
from .checkpoint_check import load_checked_checkpoint

__all__ = ['IPRExportModule', 'build_pose_model', 'build_export_module', 'export_module', 'export_onnx',
           'verify_onnx', 'export_argument_problems', 'INPUT_NAME', 'OUTPUT_NAMES']

INPUT_NAME = 'image'
OUTPUT_NAMES = ('keypoints', 'scores')
MIN_OPSET = 11  # IsFinite came in opset 10; 11, 13 and 17 (the default) export and verify
# the TorchScript exporter: asked for from torch 2.5 on (where torch.export's became possible, and from 2.9 the
# default); before 2.5 it is the only one, and the argument does not exist
_TORCHSCRIPT_EXPORTER = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}


class IPRExportModule(nn.Module):
    """A top-down pose estimator with an :class:`IPRHead`, as one image-to-keypoints function.

    Args:
        pose_model: an mmpose ``TopdownPoseEstimator`` whose head is an ``IPRHead`` (in eval mode).
    """

    def __init__(self, pose_model: nn.Module):
        super().__init__()
        head = getattr(pose_model, 'head', None)
        if not (hasattr(head, 'scores') and hasattr(head, 'score_radius')):
            raise TypeError(f'export needs a top-down model with an IPRHead, got head {type(head).__name__}')
        self.pose_model = pose_model
        preprocessor = pose_model.data_preprocessor
        normalize = getattr(preprocessor, '_enable_normalize', False)
        mean = preprocessor.mean.view(1, -1, 1, 1) if normalize else torch.zeros(1, 3, 1, 1)
        std = preprocessor.std.view(1, -1, 1, 1) if normalize else torch.ones(1, 3, 1, 1)
        self.register_buffer('mean', mean.clone().float(), persistent=False)
        self.register_buffer('std', std.clone().float(), persistent=False)
        # mmpose loads BGR; a channel conversion in the preprocessor means the backbone was trained on RGB.
        self.channel_order = 'RGB' if getattr(preprocessor, '_channel_conversion', False) else 'BGR'

    @property
    def input_size(self) -> Tuple[int, int]:
        """(w, h) of the model input in pixels, from the head's codec."""
        decoder = self.pose_model.head.decoder
        if decoder is None:
            raise ValueError('the IPRHead has no decoder: pass input_size explicitly (--input-size W H)')
        return tuple(int(s) for s in decoder.input_size)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, 3, H, W) float pixels in [0, 255] -> keypoints (B, K, 2) normalised, scores (B, K)."""
        feats = self.pose_model.extract_feat((image - self.mean) / self.std)
        head = self.pose_model.head
        coords, probs = head(feats)
        return coords, head.scores(probs, coords)


def build_pose_model(config: ConfigLike, checkpoint: Optional[str] = None, device: str = 'cpu',
                     cfg_options: Optional[dict] = None) -> nn.Module:
    """Build an mmpose model from its config (custom imports honoured) in eval mode.

    Unlike ``mmpose.apis.init_model`` this needs no dataset metainfo, and never runs ``init_weights`` (so
    no pretrained download): without ``checkpoint`` the weights are PyTorch's random initialisation.

    Raises:
        FileNotFoundError: ``config`` or a local ``checkpoint`` is missing.
        ValueError: ``checkpoint`` is not a PyTorch checkpoint, or not one of this config (keys missing or
            unexpected, other shapes): see :func:`~ipr_plugin.apis.checkpoint_check.load_checked_checkpoint`.
    """
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    # Registers IPRHead/DSNTLabel even where the config has no custom_imports.
    from .. import codecs, models  # noqa: F401

    config = load_config(config, cfg_options)
    if checkpoint is not None and not is_url(checkpoint) and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'pose checkpoint not found: {checkpoint}{link_note(checkpoint)}')
    init_default_scope(config.get('default_scope', 'mmpose'))
    with building_model(config):
        model = revert_sync_batchnorm(MODELS.build(config.model))
    if checkpoint is not None:
        load_checked_checkpoint(model, checkpoint)
    return model.to(device).eval()


def build_export_module(config: ConfigLike, checkpoint: Optional[str] = None,
                        cfg_options: Optional[dict] = None) -> IPRExportModule:
    """:func:`build_pose_model` on the CPU, wrapped as :class:`IPRExportModule` (eval mode).

    Raises:
        ValueError: as :func:`build_pose_model`, or the config's model has no ``IPRHead``.
    """
    model = build_pose_model(config, checkpoint, 'cpu', cfg_options)
    try:
        return IPRExportModule(model).eval()
    except TypeError as error:  # the user's config, not a programming error: named, for a one-line message
        name = config if isinstance(config, (str, Path)) else 'the config'
        raise ValueError(f'{name}: {error}') from None


def export_argument_problems(input_size: Optional[Sequence[int]] = None, batch_size: int = 1,
                             opset: int = 17) -> Dict[str, str]:
    """What is wrong with :func:`export_module`'s arguments, by argument name (empty when all is well).

    Checked up front because torch reports a zero or negative size only from deep inside the first convolution,
    and an opset without ``IsFinite`` (the graph's check of the logits) from deep inside the exporter.
    """
    problems = {}
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        problems['opset'] = (f'must be {MIN_OPSET} or later (the graph checks its logits with IsFinite, and the '
                             f'export is verified from {MIN_OPSET} on), got {opset!r}')
    if input_size is not None and not is_whole_pair(input_size):
        problems['input_size'] = f'must be two positive integers (w, h), got {input_size!r}'
    if int(batch_size) != batch_size or batch_size < 1:
        problems['batch_size'] = f'must be a positive integer, got {batch_size}'
    return problems


def require_onnx(module_name: str = 'onnx'):
    """Import ``onnx`` or ``onnxruntime``, which only the ``onnx`` extra installs (export and ``--verify`` alone
    need them).

    Raises:
        ImportError: not installed; the message says how to install it.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f'{module_name} is not installed: ONNX export needs `pip install "ipr_plugin[onnx]"` '
                          f'(or `pip install onnx onnxruntime`)') from error


def _metadata(module: IPRExportModule, w: int, h: int) -> Dict[str, str]:
    """What the graph's metadata tells a runtime about its input and outputs."""
    return dict(input_size=f'{w},{h}', input_range='0-255', channel_order=module.channel_order,
                keypoints='normalised (u, v), pixel x = ((u + 1) * w - 1) / 2',
                # a UDP crop (pixel 0 and w - 1 on the box's edges) maps back to the image by x * box_w / (w - 1)
                crop=('udp' if getattr(module.pose_model.head.decoder, 'use_udp', False) else 'standard'),
                scores=f'probability mass within {module.pose_model.head.score_radius} heatmap cells')


def export_module(module: IPRExportModule, out_file: str, input_size: Optional[Sequence[int]] = None,
                  opset: int = 17, batch_size: int = 1, dynamic_batch: bool = True) -> str:
    """Trace ``module`` on a (batch_size, 3, h, w) input and write it as ONNX.

    Args:
        module: the model to export (kept on its device, eval mode).
        out_file: the ``.onnx`` file (parent folders are created).
        input_size: (w, h) in pixels; ``None`` takes the codec's ``input_size``.
        opset: ONNX opset version.
        batch_size: batch of the tracing input (the exported batch when ``dynamic_batch=False``).
        dynamic_batch: make the batch axis of the input and both outputs symbolic (``batch``).

    Returns:
        ``out_file``.

    Raises:
        ValueError: ``input_size`` or ``batch_size`` is not positive, or ``opset`` too old (see
            :func:`export_argument_problems`).
        ImportError: ``onnx`` is not installed (see :func:`require_onnx`).
    """
    onnx = require_onnx()
    raise_problems(export_argument_problems(input_size, batch_size, opset))
    w, h = (int(s) for s in (input_size or module.input_size))
    device = next(module.parameters()).device
    dummy = torch.rand(batch_size, 3, h, w, device=device) * 255
    dynamic_axes = {name: {0: 'batch'} for name in (INPUT_NAME, ) + OUTPUT_NAMES} if dynamic_batch else None
    check_out_file(out_file)  # before tracing, which takes a while
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    module.eval()
    # an export cut short (Ctrl-C, a time limit) leaves an earlier file as it was, not a truncated model or one
    # without the metadata below
    with written_whole(out_file) as partial:
        with torch.no_grad(), warnings.catch_warnings():
            # The exporter's deprecation notice and the tracer's warnings about shape checks turned into
            # constants are expected: only the batch axis is meant to vary.
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(module, (dummy, ), partial, **_TORCHSCRIPT_EXPORTER, input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), opset_version=opset, dynamic_axes=dynamic_axes)
        graph = onnx.load(partial)
        for key, value in _metadata(module, w, h).items():
            graph.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(graph)
        onnx.save(graph, partial)
    return out_file


def export_onnx(config: ConfigLike, checkpoint: Optional[str], out_file: str,
                input_size: Optional[Sequence[int]] = None, opset: int = 17, batch_size: int = 1,
                dynamic_batch: bool = True, cfg_options: Optional[dict] = None) -> str:
    """Export an IPR model (config + checkpoint, ``None`` for random weights) to ONNX; see the module doc.

    Returns:
        ``out_file``.

    Raises:
        ValueError: bad ``input_size``, ``batch_size`` or ``opset`` (checked before the model is built), or a
            checkpoint that is not one of this config.
    """
    raise_problems(export_argument_problems(input_size, batch_size, opset))
    check_out_file(out_file, inputs=(config, checkpoint))
    module = build_export_module(config, checkpoint, cfg_options)
    return export_module(module, out_file, input_size, opset, batch_size, dynamic_batch)


def verify_onnx(model_path: str, torch_module: nn.Module,
                inputs: Union[Tensor, Sequence[Tensor]]) -> Dict[str, float]:
    """Run the ONNX model with onnxruntime (CPU) and ``torch_module`` on the same inputs.

    Args:
        model_path: the exported ``.onnx`` file.
        torch_module: the reference, e.g. the :class:`IPRExportModule` that was exported.
        inputs: one (B, 3, H, W) tensor or several (each run as its own batch; sizes may differ when the
            batch axis is dynamic).

    Returns:
        Per output name, the largest absolute difference over all inputs (normalised units for
        ``keypoints``, probability for ``scores``).

    Raises:
        ValueError: an output's shape differs between onnxruntime and torch, or either gives NaN or Inf.
    """
    ort = require_onnx('onnxruntime')

    session = ort.InferenceSession(model_path, providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    diffs = {name: 0.0 for name in names}
    device = next(torch_module.parameters()).device
    for x in ([inputs] if isinstance(inputs, Tensor) else inputs):
        with torch.no_grad():
            expected = torch_module(x.to(device).float())
        got = session.run(names, {input_name: x.float().cpu().numpy()})
        for name, ref, out in zip(names, expected, got):
            ref = ref.cpu().numpy()
            if ref.shape != out.shape:
                raise ValueError(f'{name}: onnxruntime gives shape {out.shape}, torch {ref.shape}')
            for who, values in (('onnxruntime', out), ('torch', ref)):  # max() would pass a NaN difference as 0
                if not np.isfinite(values).all():
                    raise ValueError(f'{name}: {who} gives NaN or Inf for an input of shape {tuple(x.shape)}')
            diffs[name] = max(diffs[name], float(np.abs(ref - out).max()))
    return diffs

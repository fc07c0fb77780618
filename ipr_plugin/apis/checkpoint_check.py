"""Reading checkpoints for the command-line tools, refusing files that are not checkpoints or do not fit the model.

mmengine's ``load_checkpoint`` only warns about missing or unexpected keys and about shapes that differ, so a
checkpoint of another config (or one with renamed keys) silently leaves random weights in the model; and a file
that is not a checkpoint at all fails inside torch's unpickler (e.g. ``KeyError: 101`` for a text file), naming
neither the file nor the problem. Weights holding NaN (a diverged run's) are refused too: through a model they
become an error about the first image it sees.
"""
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

__all__ = ['checkpoint_format_problem', 'read_checkpoint', 'load_checked_checkpoint', 'load_checkpoint_strictly',
           'init_checked_model', 'weights_found']

NUM_SHOWN = 5  # keys (or shape mismatches) quoted in an error


def _first(items: Sequence[str], sep: str = ', ') -> str:
    more = len(items) - NUM_SHOWN
    return sep.join(items[:NUM_SHOWN]) + (f'{sep}... {more} more' if more > 0 else '')


# torch.save writes a zip archive; files saved with _use_new_zipfile_serialization=False (and torch < 1.6) are a
# pickle, which starts with the PROTO opcode
_CHECKPOINT_STARTS = (b'PK\x03\x04', b'\x80')


def checkpoint_format_problem(path: str) -> Optional[str]:
    """Why the local file ``path`` cannot be a PyTorch checkpoint, from its first bytes alone (a config, an image,
    a text file given in its place), or None. Cheap enough to run before a loader that would fail on such a file
    without naming it (mmengine's, inside ``mim test --checkpoint``)."""
    with open(path, 'rb') as f:
        head = f.read(4)
    if not head:
        return f'{path} is not a PyTorch checkpoint (the file is empty)'
    if not head.startswith(_CHECKPOINT_STARTS):
        return (f'{path} is not a PyTorch checkpoint (it starts with {head!r}, neither the zip archive torch.save '
                'writes nor a pickle)')
    return None


def read_checkpoint(path: str) -> Mapping[str, Any]:
    """The checkpoint dict at ``path`` (local file or any mmengine-supported URL), read on the CPU.

    Raises:
        FileNotFoundError: the file is missing (other ``OSError``: unreadable, or the download failed).
        ValueError: the file is not a PyTorch checkpoint; the message names it and says why (its first bytes,
            or torch's error).
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    from ..arguments import is_url
    # a file that is no checkpoint by its first bytes is said so as the hook and mim test say it, not through
    # the error of torch's unpickler
    problem = checkpoint_format_problem(path) if not is_url(path) and osp.isfile(path) else None
    if problem:
        raise ValueError(problem)
    try:
        checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except OSError:  # missing or unreadable file, failed download: these name the file already
        raise
    except Exception as err:  # torch's unpickler errors (KeyError, EOFError, ...) do not name the file
        if isinstance(err, pickle.UnpicklingError) and 'weights_only' in str(err):
            # torch's text advises weights_only=False: needless for a file that is no checkpoint, and running the
            # file's code for one holding more than a checkpoint holds. Quote only what its unpickler refused.
            refused = next((line.strip() for line in str(err).splitlines()
                            if line.strip().startswith(('Trying to load', 'WeightsUnpickler error', 'Unsupported'))),
                           'see torch.load')
            raise ValueError(f'{path} is not a PyTorch checkpoint, or holds objects beyond those of mmengine and '
                             f"mmpose checkpoints, which loading would have to run as code (torch's weights-only "
                             f'unpickler: {refused})') from err
        reason = f'{type(err).__name__}: {err}' if str(err) else type(err).__name__
        raise ValueError(f'{path} is not a PyTorch checkpoint ({reason})') from err
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{path} is not a PyTorch checkpoint (it holds a {type(checkpoint).__name__}, not a dict)')
    return checkpoint


def _shape_problem(line: str) -> str:
    """torch's ``size mismatch for KEY: copying a param with shape torch.Size([A]) from checkpoint, the shape in
    current model is torch.Size([B]).`` as ``KEY: checkpoint [A], model [B]``; any other line as it is."""
    found = re.match(r'size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from '
                     r'checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)', line)
    return f'{found[1]}: checkpoint {found[2]}, model {found[3]}' if found else line.strip()


def load_checked_checkpoint(model: nn.Module, path: str) -> Dict[str, Any]:
    """Load the checkpoint at ``path`` into ``model``, as mmengine's ``load_checkpoint`` does but strictly.

    The keys are compared after the model's own load hooks ran (e.g. ``IPRHead`` renaming the keys of an mmpose
    heatmap checkpoint and dropping mmpose's frozen grids), so only what the model really lacks or cannot use is
    reported. BatchNorm's ``num_batches_tracked`` may be absent, as mmengine allows.

    Returns:
        The checkpoint dict (``meta`` included).

    Raises:
        ValueError: ``path`` is not a checkpoint, or it lacks some of the model's keys, has keys the model does
            not know or tensors of other shapes, or weights with NaN or Inf; the message names ``path`` and the
            first few keys.
    """
    checkpoint = read_checkpoint(path)
    load_checkpoint_strictly(model, checkpoint, path)
    return checkpoint


def _loaded_keys(model: nn.Module) -> List[str]:
    """The keys ``load_state_dict`` looks for: parameters and persistent buffers (not what a state-dict hook adds,
    such as ``IPRHead``'s grids in mmpose's form, written for mmpose's heads and dropped on loading)."""
    keys = []
    for name, module in model.named_modules(remove_duplicate=False):  # as state_dict lists a shared module
        prefix = f'{name}.' if name else ''
        keys += [prefix + k for k, v in module._parameters.items() if v is not None]
        keys += [prefix + k for k, v in module._buffers.items()
                 if v is not None and k not in module._non_persistent_buffers_set]
    return keys


def _state_dict(checkpoint: Mapping[str, Any], path: str) -> 'OrderedDict[str, Any]':
    """The weights of the checkpoint dict ``checkpoint`` (read from ``path``), without the ``module.`` prefix a
    (Distributed)DataParallel wrapper saved them with, as mmengine loads them."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f'{path} is not a PyTorch checkpoint (its state_dict is a {type(state_dict).__name__})')
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state_dict.items())
    if metadata is not None:  # BatchNorm's version record, read by its own load hook
        state_dict._metadata = metadata
    return state_dict


def weights_found(model: nn.Module, checkpoint: Mapping[str, Any], path: str) -> 'tuple[int, int]':
    """How many of ``model``'s weights (parameters and persistent buffers, BatchNorm's ``num_batches_tracked``
    aside) the checkpoint dict ``checkpoint`` (read from ``path``) holds under the same name and shape, and how
    many there are: for loaders that stay lenient, as mmdet's ``init_detector``, to tell a checkpoint of
    another model (which leaves the weights random) from one that lacks a few keys."""
    state_dict = _state_dict(checkpoint, path)
    own = {k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}
    found = sum(torch.is_tensor(state_dict.get(k)) and state_dict[k].shape == v.shape for k, v in own.items())
    return found, len(own)


def load_checkpoint_strictly(model: nn.Module, checkpoint: Mapping[str, Any], path: str) -> None:
    """Load the checkpoint dict ``checkpoint`` (read from ``path``) into ``model``, or raise as
    :func:`load_checked_checkpoint` does."""
    state_dict = _state_dict(checkpoint, path)
    not_this_config = 'not a checkpoint of this config'
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shapes that differ (or values that are not tensors) raise even when not strict
        problems = [_shape_problem(line) for line in str(err).split('\n\t')[1:]] or [str(err)]
        # torch's own list says the same at length: not chained
        raise ValueError(f'checkpoint {path} does not fit the model ({_first(problems, "; ")}): '
                         f'{not_this_config}') from None
    missing = [k for k in result.missing_keys if not k.endswith('num_batches_tracked')]
    if missing:
        total = sum(not k.endswith('num_batches_tracked') for k in _loaded_keys(model))
        raise ValueError(f"checkpoint {path} lacks {len(missing)} of the model's {total} keys ({_first(missing)}): "
                         f'{not_this_config}')
    if result.unexpected_keys:
        raise ValueError(f'checkpoint {path} has {len(result.unexpected_keys)} key(s) the model does not have '
                         f'({_first(result.unexpected_keys)}): {not_this_config}')
    # Weights with a NaN or Inf give NaN for every image; said here, the culprit is the file, not an image.
    broken = [k for k, v in state_dict.items()
              if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise ValueError(f'checkpoint {path} holds NaN or Inf in {len(broken)} tensor(s) ({_first(broken)}): '
                         'the run that saved it diverged')


def init_checked_model(config, checkpoint: Optional[str], device: str = 'cpu',
                       cfg_options: Optional[dict] = None) -> nn.Module:
    """mmpose's ``init_model``, except that ``checkpoint`` (if any) is loaded by :func:`load_checked_checkpoint`:
    ``init_model`` only warns about another config's checkpoint, and the model would run with random weights.
    ``dataset_meta`` comes, as there, from the checkpoint's meta, else from the config."""
    from mmpose.apis import init_model

    from ..config_checks import building_model
    from ..paths import load_config
    config = load_config(config, cfg_options)
    with building_model(config):
        model = init_model(config, None, device='cpu')
    if checkpoint is not None:
        meta = load_checked_checkpoint(model, checkpoint).get('meta') or {}
        if 'dataset_meta' in meta:
            model.dataset_meta = meta['dataset_meta']
    return model.to(device)

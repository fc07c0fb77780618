"""Let ``mim train ... --launcher pytorch --gpus N`` run N gloo processes on a machine without CUDA.

mmengine 0.10.7 assumes CUDA once a job is distributed and crashes three ways without it:

1. ``mmengine.dist.utils._init_dist_pytorch`` calls ``torch.cuda.set_device(local_rank)`` unconditionally
   (``Found no NVIDIA driver``), and
2. then ``init_process_group(backend='nccl')`` with mmpose's default ``env_cfg.dist_cfg`` (``ProcessGroupNCCL is
   only supported with GPUs``);
3. ``Runner.wrap_model`` gives ``MMDistributedDataParallel`` ``device_ids=[LOCAL_RANK]``, which DDP refuses for a
   module whose parameters live on the CPU.

:func:`patch_cpu_distributed` fixes each at the narrowest point, and only where CUDA is unavailable, i.e. only
where mmengine would otherwise crash; with CUDA the original code runs unchanged (NCCL, ``set_device``,
``device_ids``). Importing :mod:`ipr_plugin.engine` applies it; a config's ``custom_imports`` does that in every
rank before the Runner is built, which is before ``init_dist`` and ``wrap_model`` run.

Why these hook points:

- ``init_dist`` looks ``_init_dist_pytorch`` up as a module global at call time, so replacing that attribute is
  seen by every caller (Runner.setup_env, mmpose's tools) without touching ``init_dist``'s argument handling
  (timeouts, ``mp`` start method) or the slurm/mpi launchers.
- ``wrap_model`` hard-codes ``device_ids`` both when it builds ``MMDistributedDataParallel`` itself and as a
  ``default_args`` entry for a configured wrapper; both paths end in ``MMDistributedDataParallel.__init__``
  (also for its subclasses), so wrapping that constructor is the one place that sees every case without
  copying ``wrap_model``.

The ``mim`` side needs nothing: ``torch.distributed.launch`` sets ``LOCAL_RANK``/``RANK``/``WORLD_SIZE`` in the
environment and passes ``--local-rank``, which mmpose's ``tools/train.py`` accepts.
"""
import functools
import os
import sys
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as torch_dist
from mmengine.dist import utils as dist_utils
from mmengine.model import MMDistributedDataParallel
from torch import nn

from .patching import install


def needs_cpu_fallback() -> bool:
    """True where mmengine's CUDA-only distributed code would crash: no CUDA device and no other accelerator
    mmengine's ``_init_dist_pytorch`` handles (MLU, NPU, MUSA take their own branches there)."""
    if torch.cuda.is_available():
        return False
    return not (dist_utils.is_mlu_available() or dist_utils.is_npu_available()
                or dist_utils.is_musa_available())


def cpu_backend(backend: str) -> str:
    """The backend to use without CUDA: NCCL cannot run there, gloo is torch's CPU backend; anything else the
    user chose explicitly (gloo, mpi) is kept."""
    return 'gloo' if backend == 'nccl' else backend


def _wrap_init_dist_pytorch(original: Callable[..., None]) -> Callable[..., None]:
    """Return ``_init_dist_pytorch`` that, without CUDA, skips ``set_device`` and swaps NCCL for gloo."""

    @functools.wraps(original)
    def _init_dist_pytorch(backend: str, init_backend: str = 'torch', **kwargs: Any) -> None:
        # DeepSpeed/ColossalAI initialise themselves and were never CPU-capable here; leave them to mmengine.
        if not needs_cpu_fallback() or init_backend != 'torch':
            return original(backend, init_backend=init_backend, **kwargs)
        backend = cpu_backend(backend)
        torch_dist.init_process_group(backend=backend, **kwargs)
        # Printed by every rank (an MMLogger would mute ranks > 0), so a caller can check that all ranks came up; one
        # write per line keeps the ranks' lines whole on a shared pipe.
        sys.stdout.write(
            f'ipr_plugin: CUDA unavailable, torch.distributed initialised with backend {backend!r} '
            f'(rank {torch_dist.get_rank()} of {torch_dist.get_world_size()}, '
            f"LOCAL_RANK {os.environ.get('LOCAL_RANK')})\n")
        sys.stdout.flush()

    return _init_dist_pytorch


def _module_on_cpu(module: nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` is on the CPU (DDP's "CPU module")."""
    tensors = list(module.parameters()) + list(module.buffers())
    return all(t.device.type == 'cpu' for t in tensors)


def _wrap_ddp_init(original: Callable[..., None]) -> Callable[..., None]:
    """Return ``MMDistributedDataParallel.__init__`` that drops ``device_ids`` for a CPU module without CUDA."""

    @functools.wraps(original)
    def __init__(self: MMDistributedDataParallel, module: nn.Module, *args: Any, **kwargs: Any) -> None:
        device_ids: Optional[Sequence[int]] = kwargs.get('device_ids')
        # DDP raises ValueError for device_ids with a CPU module, so this only changes calls that would fail.
        if device_ids and needs_cpu_fallback() and _module_on_cpu(module):
            kwargs['device_ids'] = None
        original(self, module, *args, **kwargs)

    return __init__


def patch_cpu_distributed() -> None:
    """Install both CPU fallbacks into mmengine (idempotent)."""
    install(dist_utils, '_init_dist_pytorch', _wrap_init_dist_pytorch)
    install(MMDistributedDataParallel, '__init__', _wrap_ddp_init)

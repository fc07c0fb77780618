"""Runtime fixes for the OpenMMLab stack, applied on import (idempotently).

- :func:`register_safe_globals`: mmengine/mmpose checkpoints load with ``torch.load(weights_only=True)``
  (torch >= 2.6) without turning the weights-only unpickler off.
- :func:`patch_cpu_distributed`: ``--launcher pytorch`` runs on machines without CUDA (gloo, no
  ``set_device``, no DDP ``device_ids``); with CUDA nothing changes.
- :func:`patch_hooks`: ``default_hooks=dict(name=None)`` switches off any default hook (mmpose's and the plugin's
  too, not only mmengine's six), and ``Runner.val()`` with ``save_best`` returns its metrics instead of failing.
- :func:`patch_loaders`: a warning where non-persistent loader workers, seeded alike by mmengine every epoch,
  would repeat each epoch's random augmentation; pinned memory off without an accelerator (torch ignores it there,
  with a warning at every epoch).

Hooks of the fast path: :class:`ChannelsLastHook`, :class:`IPRRuntimeInfoHook` (logging without a host sync per
iteration), :class:`CompileHook` (``torch.compile`` of the backbone and deconv stack), :class:`IPRTestCollateHook`
(the test loader collates as validation does). Hooks against silent failures, in every config of the plugin:
:class:`FiniteLossHook` (training stops at a NaN or infinite loss), :class:`CheckpointFitHook` (a test run
refuses a checkpoint that does not fit the model), :class:`MetricKeyCheckHook` (a ``save_best`` or monitor key
validation will not report is refused before training, not after the first validation) and
:class:`CropSizeCheckHook` (so is a val pipeline cropping at another size than the head decodes for).
"""
from .channels_last_hook import ChannelsLastHook
from .checkpoint import register_safe_globals, safe_globals
from .checkpoint_fit_hook import CheckpointFitHook
from .collate_hook import IPRTestCollateHook
from .compile_hook import CompileHook
from .crop_size_check_hook import CropSizeCheckHook
from .distributed import needs_cpu_fallback, patch_cpu_distributed
from .finite_loss_hook import FiniteLossHook
from .hook_fixes import patch_hooks
from .loaders import patch_loaders
from .metric_key_check_hook import MetricKeyCheckHook
from .runtime_info_hook import IPRRuntimeInfoHook

register_safe_globals()
patch_cpu_distributed()
patch_hooks()
patch_loaders()

__all__ = ['register_safe_globals', 'safe_globals', 'patch_cpu_distributed', 'needs_cpu_fallback', 'patch_hooks',
           'patch_loaders', 'ChannelsLastHook', 'CompileHook', 'IPRRuntimeInfoHook', 'FiniteLossHook',
           'CheckpointFitHook', 'IPRTestCollateHook', 'MetricKeyCheckHook', 'CropSizeCheckHook']

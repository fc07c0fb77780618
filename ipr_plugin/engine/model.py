"""The Runner's model without its distributed wrapper, for hooks that reach into its modules."""
import torch.nn as nn
from mmengine.model import is_model_wrapper


def bare_model(runner) -> nn.Module:
    """``runner.model``, or the module inside it where mmengine wrapped it (``MMDistributedDataParallel`` and the
    like under ``--launcher pytorch``)."""
    return runner.model.module if is_model_wrapper(runner.model) else runner.model

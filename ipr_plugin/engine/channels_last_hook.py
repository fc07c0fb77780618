"""The fast path's channels-last memory format for the model and its batches."""
import torch
from mmengine.hooks import Hook
from mmpose.registry import HOOKS


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Convert the model to channels-last memory format before it runs.

    Convolutions under bf16/fp16 autocast run fastest on NHWC tensor-core kernels; with the model and the
    inputs (``IPRDataPreprocessor(channels_last=True)``) both channels-last no layout conversions remain.
    The values computed are the same; only the memory layout changes.

    A model on the CPU is left as it is: channels-last buys nothing there, and torch 2.14.1's CPU kernels crash
    the process (SIGSEGV) when training a narrow ResNet channels-last (ResNet-18 with base width 4 or 8 at
    256x256, forward and backward; base widths 16 and 64 run).
    """

    priority = 'VERY_HIGH'

    def _convert(self, runner) -> None:
        model = runner.model
        if any(p.is_cuda for p in model.parameters()):
            model.to(memory_format=torch.channels_last)

    def before_train(self, runner) -> None:
        self._convert(runner)

    def before_val(self, runner) -> None:
        self._convert(runner)

    def before_test(self, runner) -> None:
        self._convert(runner)

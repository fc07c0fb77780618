"""No blocking host-to-device copy in the fast path's per-batch work: on a GPU each is a stream sync, which stops
the host from queueing the next step while the GPU works. Checked without a GPU: the code runs on torch's fake
CUDA tensors (``FakeTensorMode``: real dispatch, device checks as on a GPU, no data), and a dispatch mode records
every host-to-device copy with its ``non_blocking`` flag."""
import traceback
from typing import List, Tuple

import torch
from mmengine.structures import InstanceData
from mmpose.registry import MODELS
from mmpose.structures import PoseDataSample
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import ipr_plugin  # noqa: F401
from ipr_plugin.datasets.collate import ipr_collate
from heads import FLIP, H, K, W, logit_head


class HostToDevice(TorchDispatchMode):
    """Records (shape, non_blocking, innermost ipr_plugin frame) of every CPU -> CUDA copy dispatched."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: List[Tuple[tuple, bool, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            dst = args[0].device if func is torch.ops.aten.copy_.default else kwargs.get('device', src.device)
            if src.device.type == 'cpu' and torch.device(dst).type == 'cuda':
                frames = [f for f in traceback.extract_stack()
                          if 'site-packages' not in f.filename and f.filename != __file__]
                where = f'{frames[-1].filename}:{frames[-1].lineno}' if frames else '?'
                self.copies.append((tuple(src.shape), bool(kwargs.get('non_blocking', False)), where))
        return func(*args, **kwargs)

    def blocking(self) -> List[Tuple[tuple, bool, str]]:
        return [c for c in self.copies if not c[1]]


def _items(n: int = 3) -> list:
    items = []
    for i in range(n):
        sample = PoseDataSample(metainfo=dict(input_size=(64, 64), img_shape=(64, 64)))
        sample.gt_instance_labels = InstanceData(keypoint_labels=torch.rand(1, K, 2) - 0.5,
                                                 keypoint_weights=torch.ones(1, K))
        items.append(dict(inputs=torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8), data_samples=sample))
    return items


def test_the_fast_preprocessor_copies_a_batch_to_the_gpu_without_a_stream_sync():
    """mmengine's BGR -> RGB swap indexes with a Python list, which torch copies to the device blocking, once per
    batch. (A pseudo_collate list, the test loader's, swaps each image the same way; mmengine's stack_batch then
    does shape arithmetic in host tensors, which fake tensors cannot follow: its values are checked on the CPU in
    test_fast_path.py.)"""
    batch = ipr_collate(_items())
    cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True, non_blocking=True)
    ours = MODELS.build(dict(type='IPRDataPreprocessor', channels_last=True, **cfg))
    with FakeTensorMode(allow_non_fake_inputs=True):
        ours = ours.to('cuda')
        copies = HostToDevice()
        with copies:
            out = ours(batch, True)
        assert out['inputs'].device.type == 'cuda' and out['inputs'].shape == (3, 3, 64, 64)
        assert out['data_samples'][0].gt_instance_labels.keypoint_labels.device.type == 'cuda'
    assert copies.copies and copies.blocking() == []  # the images and labels, each copied without waiting


def test_the_flip_test_and_the_loss_make_no_host_copy_after_the_first_batch():
    head = logit_head(beta=2.0, debias=True)
    torch.manual_seed(0)
    with FakeTensorMode(allow_non_fake_inputs=True):
        head = head.to('cuda')
        logits = torch.randn(2, K, H, W, device='cuda')
        head._flip_test([(logits,), (logits.flip(-1),)], FLIP)  # the first makes the permutation's device copy
        copies = HostToDevice()
        with copies, torch.no_grad():
            coords = head._flip_test([(logits,), (logits.flip(-1),)], FLIP)[1]
        assert coords.device.type == 'cuda'
    assert copies.copies == []

"""``--launcher pytorch`` without CUDA: gloo, no ``set_device``, no DDP ``device_ids`` (``ipr_plugin.engine``).

The unit tests run mmengine's own ``init_dist`` and ``MMDistributedDataParallel`` in a fresh interpreter (a
process group and mmengine's multiprocessing start method are process-wide); the end-to-end test runs a real
2-process ``mim train`` on the COCO sample.
"""
import json
import os
import math
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ipr_plugin.engine  # noqa: F401  (safe globals for loading the checkpoint)
from utils import REPO_ROOT, SAMPLE_CONFIG, coco_sample_cfg_options, run_mim

OUR_SAMPLE_CONFIG = REPO_ROOT / 'configs' / 'sample' / 'ipr_res18_coco-sample-64x64.py'

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='tests the CPU-only fallback')

# A 1-rank job through mmengine's own entry points; prints what the tests assert on.
_SINGLE_RANK_JOB = textwrap.dedent('''
    import os, sys
    import torch, torch.distributed as dist
    if sys.argv[1] == 'pretend-cuda':
        # Stands in for a CUDA machine: the plugin must hand over to mmengine's original code, which then
        # fails on this machine exactly as it would without the plugin.
        torch.cuda.is_available = lambda: True
    import ipr_plugin.engine  # noqa: F401
    from mmengine.dist import init_dist
    from mmengine.model import MMDistributedDataParallel
    os.environ.update(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1', MASTER_PORT=sys.argv[2])
    try:
        init_dist('pytorch')  # mmengine's default backend: nccl
        print('backend', dist.get_backend())
    except Exception as e:
        print('init_dist failed:', type(e).__name__, e)
        dist.init_process_group('gloo')
    try:
        model = MMDistributedDataParallel(module=torch.nn.Linear(2, 1), device_ids=[0])
        print('device_ids', model.device_ids)
    except Exception as e:
        print('DDP failed:', type(e).__name__, e)
    dist.destroy_process_group()
''')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _training_instances(ann_file: Path) -> int:
    """People mmpose's CocoDataset trains on: not crowd, with at least one labelled keypoint."""
    annotations = json.loads(ann_file.read_text())['annotations']
    return sum(1 for a in annotations if not a.get('iscrowd') and a['num_keypoints'] > 0)


def _single_rank_job(mode: str) -> str:
    proc = subprocess.run([sys.executable, '-c', _SINGLE_RANK_JOB, mode, str(_free_port())], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_cpu_init_picks_gloo_and_ddp_drops_device_ids() -> None:
    out = _single_rank_job('cpu')
    assert 'backend gloo' in out, out
    assert 'device_ids None' in out, out


def test_cuda_path_is_left_to_mmengine() -> None:
    """With CUDA reported, mmengine's ``set_device`` and DDP's ``device_ids`` check run as without the plugin."""
    out = _single_rank_job('pretend-cuda')
    assert re.search(r'init_dist failed: RuntimeError .*(NVIDIA driver|CUDA)', out), out
    assert re.search(r'DDP failed: ValueError .*device_ids', out), out


@pytest.mark.parametrize('config', [SAMPLE_CONFIG, OUR_SAMPLE_CONFIG], ids=['mmpose-head', 'ipr-head'])
def test_mim_train_two_cpu_ranks(config: Path, coco_sample: Path, tmp_path: Path) -> None:
    """``mim train --launcher pytorch --gpus 2`` on the CPU: both ranks train and validate, rank 0 saves."""
    out = run_mim(['train', 'mmpose', config, '--launcher', 'pytorch', '--gpus', '2', '--port',
                   _free_port(), '--work-dir', tmp_path, '--cfg-options', *coco_sample_cfg_options(coco_sample),
                   'train_cfg.max_epochs=1', 'train_dataloader.batch_size=1'],
                  timeout=240).stdout
    for rank in (0, 1):
        assert f"backend 'gloo' (rank {rank} of 2" in out, out[-3000:]
    assert 'GPU number: 2' in out
    # The training people split over 2 ranks at batch size 1: half as many iterations as in a 1-process run.
    per_rank = math.ceil(_training_instances(coco_sample / 'test_coco.json') / 2)
    assert f'Epoch(train) [1][{per_rank}/{per_rank}]' in out, out[-3000:]
    assert 'coco/AP:' in out
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=True, map_location='cpu')
    # Saved from the DDP-wrapped model, yet with the bare model's keys.
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])


# Stands in for a loss (or batch-norm statistics, or predictions) that turned non-finite in one process only: the
# loss a hook before FiniteLossHook reads (the weights stay finite), the first running variance after the first
# epoch, the keypoints the metric is given.
_FAULT_MODULE = textwrap.dedent('''
    from mmengine.dist import get_rank
    from mmengine.hooks import Hook
    from mmpose.registry import HOOKS, METRICS

    from ipr_plugin.evaluation import IPRCocoMetric

    @HOOKS.register_module()
    class NonFiniteInOneProcess(Hook):
        priority = 'HIGHEST'

        def __init__(self, rank, iteration=None, batch_norm=False):
            self.rank, self.iteration, self.batch_norm = rank, iteration, batch_norm

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if get_rank() == self.rank and runner.iter + 1 == self.iteration:
                outputs.update({k: v * float('nan') for k, v in outputs.items() if 'loss' in k})

        def after_train_epoch(self, runner):
            if get_rank() == self.rank and self.batch_norm:
                model = getattr(runner.model, 'module', runner.model)
                next(b for n, b in model.named_buffers() if n.endswith('running_var')).fill_(float('nan'))

    @METRICS.register_module()
    class NaNKeypointsInProcess1(IPRCocoMetric):
        def process(self, data_batch, data_samples):
            if get_rank() == 1:
                for sample in data_samples:
                    sample['pred_instances']['keypoints'] = sample['pred_instances']['keypoints'] * float('nan')
            super().process(data_batch, data_samples)
''')


@pytest.mark.parametrize('fault, said', [
    ("custom_hooks = [dict(type='NonFiniteInOneProcess', rank=1, iteration=1)]",
     r'FloatingPointError: FiniteLossHook: the loss is not finite at iteration 1 \(epoch 1\): loss=nan, .*'
     r'\(process 1 of 2\)\. '),
    ("custom_hooks = [dict(type='NonFiniteInOneProcess', rank=1, batch_norm=True)]",
     r'FloatingPointError: FiniteLossHook: the weights after iteration \d+ in process 1 of 2 are not finite '
     r"\(backbone\.\S+running_var\) .* Nothing is validated; the checkpoints hold process 0's weights"),
    ("val_evaluator = dict(type='NaNKeypointsInProcess1')",
     r'ValueError: IPRCocoMetric: the keypoints for image id \d+ \(\S+\.jpg\) contain NaN or Inf: .* '
     r'\(found in process 1 of 2\)'),
], ids=['loss', 'batch-norm', 'predictions'])
def test_a_non_finite_value_in_one_process_stops_every_process_with_one_message_in_the_log(
        fault: str, said: str, coco_sample: Path, tmp_path: Path) -> None:
    """FiniteLossHook and IPRCocoMetric raised in the process that saw the NaN only: the others trained on (or
    saved and validated) until they met its closed connection (NCCL: waited for its timeout), and the run's log
    file, which process 0 writes, ended without a word of why; a NaN loss a logging interval later named another
    iteration there."""
    (tmp_path / 'fault_injection.py').write_text(_FAULT_MODULE)
    config = tmp_path / 'faulty.py'
    config.write_text(f"_base_ = [{str(OUR_SAMPLE_CONFIG)!r}]\n"
                      "custom_imports = dict(imports=['ipr_plugin', 'fault_injection'], allow_failed_imports=False)\n"
                      f"{fault}\n")
    proc = run_mim(['train', 'mmpose', config, '--launcher', 'pytorch', '--gpus', '2', '--port', _free_port(),
                    '--work-dir', tmp_path / 'work', '--cfg-options', *coco_sample_cfg_options(coco_sample),
                    'train_cfg.max_epochs=2', 'train_dataloader.batch_size=1', 'default_hooks.logger.interval=2'],
                   timeout=240, env=dict(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)])),
                   check=False)
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    assert len(re.findall(said, out)) >= 2, out[-5000:]  # both processes, the same words
    assert 'Connection closed by peer' not in out and 'Connection reset by peer' not in out, out[-3000:]
    logs = list((tmp_path / 'work').glob('*/*.log'))
    assert len(logs) == 1 and re.search(rf' - ERROR - .*{said.split(": ", 1)[1]}', logs[0].read_text()), out[-3000:]
    assert not re.search(r'coco/AP: \d', logs[0].read_text())  # nothing was evaluated

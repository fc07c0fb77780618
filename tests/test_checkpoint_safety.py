"""Runner checkpoints load with ``weights_only=True`` (torch >= 2.6) once ``ipr_plugin.engine`` is imported, and
the weights-only unpickler still refuses code.

The checkpoint comes from a real ``mim train`` of the sample config on the COCO sample; resuming and
``mim test`` go through mmengine's own loading (``torch.load`` without ``weights_only``, i.e. ``True``).
"""
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Tuple

import pytest
import torch
import torch._utils

import ipr_plugin.engine  # noqa: F401  (registers the safe globals)
from utils import SAMPLE_CONFIG, coco_sample_cfg_options, parse_coco_metrics, run_mim

TRAIN_TIMEOUT = 180


def _train_args(work_dir: Path, coco_sample: Path, max_epochs: int) -> list:
    return ['train', 'mmpose', SAMPLE_CONFIG, '--gpus', '0', '--work-dir', work_dir, '--cfg-options',
            *coco_sample_cfg_options(coco_sample), f'train_cfg.max_epochs={max_epochs}']


@pytest.fixture(scope='module')
def trained(tmp_path_factory: pytest.TempPathFactory, coco_sample: Path) -> Path:
    """A work dir holding ``epoch_1.pth`` from one epoch (4 images, one validation) of the sample config."""
    work_dir = tmp_path_factory.mktemp('ipr_ckpt')
    run_mim(_train_args(work_dir, coco_sample, max_epochs=1), timeout=TRAIN_TIMEOUT)
    assert (work_dir / 'epoch_1.pth').is_file(), sorted(p.name for p in work_dir.iterdir())
    return work_dir


def test_runner_checkpoint_needs_the_allow_list(trained: Path) -> None:
    """Without the plugin, torch refuses the checkpoint: the allow-list is what makes the next test pass."""
    code = f'import torch; torch.load({str(trained / "epoch_1.pth")!r}, weights_only=True)'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert 'Weights only load failed' in proc.stderr


def test_runner_checkpoint_loads_weights_only(trained: Path) -> None:
    ckpt = torch.load(trained / 'epoch_1.pth', weights_only=True, map_location='cpu')
    assert {'meta', 'state_dict', 'message_hub', 'optimizer'} <= set(ckpt)
    assert ckpt['meta']['epoch'] == 1
    # The HistoryBuffers came back with their statistics, which is what needs the restricted getattr.
    buffers = ckpt['message_hub']['log_scalars']
    assert buffers and all(callable(b._statistics_methods['mean']) for b in buffers.values())
    assert 'sigmas' in ckpt['meta']['dataset_meta']


def test_resume_from_checkpoint(trained: Path, coco_sample: Path, tmp_path: Path) -> None:
    """``--resume CKPT`` (``load_from`` + ``resume=True``) continues at epoch 2 from the loaded state."""
    # argparse ends --cfg-options' values at the next option, so --resume can follow them.
    args = _train_args(tmp_path, coco_sample, max_epochs=2) + ['--resume', trained / 'epoch_1.pth']
    out = run_mim(args, timeout=TRAIN_TIMEOUT).stdout
    saved_iter = torch.load(trained / 'epoch_1.pth', weights_only=True)['meta']['iter']
    assert f'resumed epoch: 1, iter: {saved_iter}' in out
    assert 'Epoch(train) [1]' not in out and 'Epoch(train) [2]' in out
    assert (tmp_path / 'epoch_2.pth').is_file()


def test_mim_test_on_checkpoint(trained: Path, coco_sample: Path, tmp_path: Path) -> None:
    out = run_mim(['test', 'mmpose', SAMPLE_CONFIG, '--checkpoint', trained / 'epoch_1.pth', '--work-dir',
                   tmp_path, '--cfg-options', *coco_sample_cfg_options(coco_sample)],
                  timeout=TRAIN_TIMEOUT).stdout
    metrics = parse_coco_metrics(out)
    assert {'coco/AP', 'coco/AR'} <= set(metrics), out[-3000:]
    assert all(0.0 <= v <= 1.0 or v == -1.0 for v in metrics.values())


class _Reduce:
    """Pickles as ``fn(*args)``, then ``obj[k] = v`` for ``dictitems`` (pickle's SETITEMS)."""

    def __init__(self, fn: Callable, args: Tuple[Any, ...], dictitems: Tuple[Tuple[Any, Any], ...] = ()):
        self.fn, self.args, self.dictitems = fn, args, dictitems

    def __reduce__(self) -> tuple:
        return self.fn, self.args, None, None, iter(self.dictitems) if self.dictitems else None


def _assert_refused(payload: Any, path: Path, marker: Path) -> None:
    torch.save(payload, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_os_system_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / 'pwned'
    _assert_refused(_Reduce(os.system, (f'touch {marker}', )), tmp_path / 'evil.pth', marker)


def test_getattr_escape_is_refused(tmp_path: Path) -> None:
    """A pickle may name ``getattr``, but only HistoryBuffer's statistics methods come back from it.

    With the real ``getattr`` allowed, this chain reaches ``__import__`` through ``getattr(getattr,
    '__self__')``, rebinds ``_rebuild_tensor`` in the globals of the always-allowed ``_rebuild_tensor_v2`` and
    runs ``os.spawnlp``.
    """
    marker = tmp_path / 'pwned'
    rebuild = torch._utils._rebuild_tensor_v2
    original_rebuild_tensor = torch._utils._rebuild_tensor
    no_hooks = OrderedDict()
    builtins_module = _Reduce(getattr, (getattr, '__self__'))
    rebind_import = _Reduce(getattr, (rebuild, '__globals__'),
                            (('_rebuild_tensor', _Reduce(getattr, (builtins_module, '__import__'))), ))
    os_module = _Reduce(rebuild, ('os', None, None, None, False, no_hooks))
    rebind_spawn = _Reduce(getattr, (rebuild, '__globals__'),
                           (('_rebuild_tensor', _Reduce(getattr, (os_module, 'spawnlp'))), ))
    spawn = _Reduce(rebuild, (os.P_WAIT, 'touch', 'touch', str(marker), False, no_hooks))
    _assert_refused((rebind_import, rebind_spawn, spawn), tmp_path / 'evil.pth', marker)
    # Refused before the first rebinding took effect.
    assert torch._utils._rebuild_tensor is original_rebuild_tensor


@pytest.mark.parametrize('numpy_module', ['numpy.core.multiarray', 'numpy._core.multiarray'])
def test_arrays_pickled_under_either_numpy_load_weights_only(numpy_module: str, tmp_path: Path) -> None:
    """numpy 1.x names its array helpers ``numpy.core.multiarray``, numpy 2 ``numpy._core.multiarray``: a checkpoint
    carries the name of the numpy that saved it, whichever is installed where it is read."""
    import io
    import zipfile

    import numpy as np
    plain = tmp_path / 'plain.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(sigmas=np.arange(3, dtype=np.float32))), eta=np.float64(2.5)), plain)
    renamed = tmp_path / 'renamed.pth'
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(renamed, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('data.pkl'):  # protocol 2: GLOBAL names end at a newline, no length prefix
                for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
                    data = data.replace(f'{module}\n'.encode(), b'MULTIARRAY\n')
                assert b'MULTIARRAY\n' in data
                data = data.replace(b'MULTIARRAY\n', f'{numpy_module}\n'.encode())
            dst.writestr(info, data)
    loaded = torch.load(io.BytesIO(renamed.read_bytes()), weights_only=True)
    assert loaded['meta']['dataset_meta']['sigmas'].tolist() == [0, 1, 2] and loaded['eta'] == 2.5


def _schedulers(optimizer: torch.optim.Optimizer) -> dict:
    """One of each of mmengine's learning-rate schedulers (OneCycleLR with either annealing function)."""
    from mmengine.optim.scheduler import lr_scheduler as lr
    return dict(
        constant=lr.ConstantLR(optimizer), linear=lr.LinearLR(optimizer), step=lr.StepLR(optimizer, step_size=2),
        multi_step=lr.MultiStepLR(optimizer, milestones=[2]), exponential=lr.ExponentialLR(optimizer, gamma=0.9),
        cosine=lr.CosineAnnealingLR(optimizer, T_max=4), poly=lr.PolyLR(optimizer),
        cosine_restart=lr.CosineRestartLR(optimizer, periods=[2, 2], restart_weights=[1, 0.5], eta_min=0.0),
        one_cycle_cos=lr.OneCycleLR(optimizer, eta_max=0.1, total_steps=10),
        one_cycle_linear=lr.OneCycleLR(optimizer, eta_max=0.1, total_steps=10, anneal_strategy='linear'))


def test_every_mmengine_scheduler_state_loads_weights_only(tmp_path: Path) -> None:
    """A Runner checkpoint holds its schedulers' state dicts; OneCycleLR's holds its annealing function, pickled
    as ``getattr(OneCycleParamScheduler, '_annealing_cos')``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    states = {name: scheduler.state_dict() for name, scheduler in _schedulers(optimizer).items()}
    torch.save(dict(param_schedulers=states), tmp_path / 'schedulers.pth')
    loaded = torch.load(tmp_path / 'schedulers.pth', weights_only=True)['param_schedulers']
    for name, state in states.items():
        assert loaded[name].keys() == state.keys(), name
        for key, value in state.items():
            assert loaded[name][key] == value, (name, key)


def test_the_one_cycle_scheduler_class_cannot_be_called_from_a_pickle(tmp_path: Path) -> None:
    """Its pickle name resolves to an inert marker, from which only the two annealing functions can be got."""
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
    path = tmp_path / 'evil.pth'
    torch.save(_Reduce(OneCycleParamScheduler, (None, 'lr')), path)
    with pytest.raises(pickle.UnpicklingError, match='OneCycleParamScheduler may not be constructed'):
        torch.load(path, weights_only=True)
    torch.save(_Reduce(getattr, (OneCycleParamScheduler, '__init__')), path)
    with pytest.raises(pickle.UnpicklingError, match='is not allowed in a weights-only checkpoint'):
        torch.load(path, weights_only=True)


def test_older_torch_needs_no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """setup.py allows torch >= 2.1: before 2.6 torch.load unpickles everything by default, torch < 2.4 has no
    add_safe_globals (importing the plugin must not need it) and 2.4 / 2.5 take no (function, name) entries."""
    from ipr_plugin.engine.checkpoint import register_safe_globals

    monkeypatch.delattr(torch.serialization, 'add_safe_globals')
    for version in ('2.1.2', '2.5.1+cu121'):
        monkeypatch.setattr(torch, '__version__', version)
        register_safe_globals()
    monkeypatch.setattr(torch, '__version__', '2.6.0')
    with pytest.raises(AttributeError, match='add_safe_globals'):  # from 2.6 on it is called
        register_safe_globals()

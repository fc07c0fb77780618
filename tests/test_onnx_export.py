"""ONNX export of the sample config's ResNet-18 + IPRHead (random weights), checked with onnxruntime; checkpoints
that are not of the config, and bad sizes, are refused."""
import re
import runpy
import subprocess
import sys

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from ipr_plugin.apis.onnx_export import build_export_module, export_module, export_onnx, verify_onnx

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'
K, W, H = 17, 64, 64
TOL = 1e-4


@pytest.fixture(scope='module')
def module(repo_root):
    """The sample model with random He-initialised convs.

    PyTorch's default init with eval-mode BatchNorm leaves the heatmaps almost uniform (keypoints within
    1e-4 of the centre, every score ~ pi r^2 / HW), where an export error in the soft-argmax or the scores
    would hide under the tolerance; He init gives peaked maps, keypoints across the crop and scores in (0, 1).
    """
    torch.manual_seed(0)
    module = _peaked(build_export_module(str(repo_root / CONFIG)))
    with torch.no_grad():
        keypoints, scores = module(random_images(4)[0])
    assert keypoints.std() > 0.1 and scores.min() < 0.2 and scores.max() > 0.8, 'maps not peaked enough'
    return module


def _peaked(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity='relu')
    return module


@pytest.mark.parametrize('background', ['zero', 'median'])
def test_a_debiased_model_exports_and_matches_torch(repo_root, tmp_path, background):
    """ONNX has neither ``expm1`` nor ``median``: exported, the correction is written with ``exp`` and a sort."""
    torch.manual_seed(0)
    options = {'model.head.debias': True, 'model.head.debias_background': background}
    module = _peaked(build_export_module(str(repo_root / CONFIG), cfg_options=options))
    out = export_module(module, str(tmp_path / 'debias.onnx'))
    diffs = verify_onnx(out, module, random_images(1, 3))
    assert max(diffs.values()) < TOL, diffs


def random_images(*batch_sizes):
    g = torch.Generator().manual_seed(1)
    return [torch.rand(b, 3, H, W, generator=g) * 255 for b in batch_sizes]


def test_export_matches_torch_with_dynamic_batch(module, tmp_path):
    out = export_module(module, str(tmp_path / 'ipr.onnx'))  # traced with batch 1

    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [('image', ['batch', 3, H, W])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [('keypoints', ['batch', K, 2]),
                                                                   ('scores', ['batch', K])]
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta['input_size'] == f'{W},{H}' and meta['channel_order'] == 'RGB' and meta['crop'] == 'standard'

    inputs = random_images(1, 3)  # 3 != the export batch: the batch axis is really dynamic
    keypoints, scores = session.run(None, {'image': inputs[1].numpy()})
    assert keypoints.shape == (3, K, 2) and scores.shape == (3, K)
    assert abs(keypoints).max() <= 1 and 0 <= scores.min() and scores.max() <= 1
    diffs = verify_onnx(out, module, inputs)
    print(f'max |onnxruntime - torch|: {diffs}')
    assert set(diffs) == {'keypoints', 'scores'}
    assert max(diffs.values()) < TOL


def test_the_oldest_opset_taken_exports_the_same_model(module, tmp_path):
    out = export_module(module, str(tmp_path / 'opset11.onnx'), opset=11)
    assert onnx.load(out).opset_import[0].version == 11
    assert max(verify_onnx(out, module, random_images(2)).values()) < TOL


def test_a_udp_model_says_so_in_its_metadata(repo_root, tmp_path):
    """A UDP crop maps back to the image by x * box_w / (w - 1), not the standard x * box_w / w."""
    udp = build_export_module(str(repo_root / CONFIG), None, {'model.head.decoder.use_udp': True})
    out = export_module(udp, str(tmp_path / 'udp.onnx'))
    assert {p.key: p.value for p in onnx.load(out).metadata_props}['crop'] == 'udp'


def test_static_batch(module, tmp_path):
    out = export_module(module, str(tmp_path / 'static.onnx'), batch_size=2, dynamic_batch=False)
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == [2, 3, H, W]
    assert max(verify_onnx(out, module, random_images(2)).values()) < TOL
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match='(?i)dimension|shape'):
        session.run(None, {'image': random_images(3)[0].numpy()})


def test_export_from_checkpoint_and_tool(module, tmp_path, repo_root):
    ckpt = tmp_path / 'random.pth'
    torch.save({'state_dict': module.pose_model.state_dict(), 'meta': {}}, ckpt)

    # API: the checkpoint's weights reach the graph (the fixture module is the reference).
    out = export_onnx(str(repo_root / CONFIG), str(ckpt), str(tmp_path / 'api.onnx'))
    assert max(verify_onnx(out, module, random_images(2)).values()) < TOL

    # CLI wrapper, with its own verification.
    cmd = [sys.executable, str(repo_root / 'tools' / 'export_onnx.py'), str(repo_root / CONFIG), str(ckpt),
           '--out', str(tmp_path / 'cli.onnx'), '--verify']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = dict(re.findall(r'(keypoints|scores) ([0-9.e+-]+)', proc.stdout))
    assert set(found) == {'keypoints', 'scores'} and all(float(v) < TOL for v in found.values())
    assert max(verify_onnx(str(tmp_path / 'cli.onnx'), module, random_images(1)).values()) < TOL


def test_missing_config_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.py'):
        export_onnx(str(tmp_path / 'absent.py'), None, str(tmp_path / 'x.onnx'))


def test_file_that_is_not_a_checkpoint_is_named(tmp_path, repo_root):
    text = tmp_path / 'notes.pth'
    text.write_text('hello\n')  # torch's unpickler alone says "KeyError: 101"; mim test, the words below
    with pytest.raises(ValueError, match=r"notes.pth is not a PyTorch checkpoint \(it starts with b'hell', neither "
                                         r'the zip archive torch.save writes nor a pickle\)'):
        export_onnx(str(repo_root / CONFIG), str(text), str(tmp_path / 'x.onnx'))
    assert not (tmp_path / 'x.onnx').exists()
    broken = tmp_path / 'broken.pth'  # starts as a pickle does: torch's unpickler fails, and its error is quoted
    broken.write_bytes(b'\x80\x02' + b'\xff' * 10)
    with pytest.raises(ValueError, match=r"broken.pth is not a PyTorch checkpoint, or holds objects beyond .*"
                                         r"\(torch's weights-only unpickler: Unsupported operand 255\)"):
        export_onnx(str(repo_root / CONFIG), str(broken), str(tmp_path / 'x.onnx'))


@pytest.mark.parametrize('content', ['half-written', 'a list'])
def test_a_cut_short_or_non_dict_checkpoint_is_named(module, tmp_path, content):
    """An interrupted copy of a checkpoint, or a file torch.save wrote something else into."""
    from ipr_plugin.apis.checkpoint_check import read_checkpoint
    path = tmp_path / 'ckpt.pth'
    if content == 'half-written':
        torch.save({'state_dict': module.pose_model.state_dict(), 'meta': {}}, path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
        words = r'ckpt.pth is not a PyTorch checkpoint \(\w+'
    else:
        torch.save([torch.zeros(2)], path)
        words = r'ckpt.pth is not a PyTorch checkpoint \(it holds a list, not a dict\)'
    with pytest.raises(ValueError, match=words):
        read_checkpoint(str(path))


def test_a_pickle_beyond_a_checkpoint_is_named_without_torchs_advice_to_run_it(tmp_path, repo_root):
    """torch's weights-only error advises loading with weights_only=False, which would run the file's code."""
    import os
    path = tmp_path / 'odd.pth'
    torch.save({'state_dict': {}, 'call': _RunsCode()}, path)
    with pytest.raises(ValueError) as error:
        export_onnx(str(repo_root / CONFIG), str(path), str(tmp_path / 'x.onnx'))
    message = str(error.value)
    assert 'odd.pth is not a PyTorch checkpoint, or holds objects beyond' in message
    assert f'GLOBAL {os.getcwd.__module__}.getcwd' in message and 'weights_only' not in message


class _RunsCode:
    def __reduce__(self):
        import os
        return os.getcwd, ()


def test_the_tool_ends_with_one_line_on_a_missing_checkpoint(tmp_path, repo_root):
    result = subprocess.run([sys.executable, str(repo_root / 'tools' / 'export_onnx.py'), str(repo_root / CONFIG),
                             str(tmp_path / 'nope.pth'), '--out', str(tmp_path / 'x.onnx')],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('export_onnx: ') and 'nope.pth' in result.stderr
    # mmpose's own IPR config: its DSNTHead is no IPRHead, which the one line says, naming the config
    other = str(repo_root / 'configs' / 'sample' / 'mmpose-ipr_res18_coco-sample-64x64.py')
    result = subprocess.run([sys.executable, str(repo_root / 'tools' / 'export_onnx.py'), other,
                             '--out', str(tmp_path / 'x.onnx')], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f'export_onnx: {other}: export needs a top-down model '
                                                             'with an IPRHead, got head DSNTHead')
    config = str(repo_root / CONFIG)
    same = subprocess.run([sys.executable, str(repo_root / 'tools' / 'export_onnx.py'), config, '--out', config],
                          capture_output=True, text=True, timeout=300)
    assert same.returncode == 2 and 'is an input of this run' in same.stderr


def _variants(state_dict):
    """Checkpoints of other configs, or damaged ones, and the start of the error each must raise."""
    final = 'head.simplebaseline_head.final_layer.'
    return {
        'renamed': ({f'model.{k}': v for k, v in state_dict.items()},
                    r"lacks 117 of the model's 117 keys \(backbone.conv1.weight, backbone.bn1.weight, "),
        'no head': ({k: v for k, v in state_dict.items() if not k.startswith('head.')},
                    r"lacks 17 of the model's 117 keys \(head.simplebaseline_head.deconv_layers.0.weight, "),
        'extra key': (dict(state_dict, **{'neck.weight': torch.zeros(1)}),
                      r'has 1 key\(s\) the model does not have \(neck.weight\)'),
        '15 joints': (dict(state_dict, **{final + 'weight': state_dict[final + 'weight'][:15],
                                          final + 'bias': state_dict[final + 'bias'][:15]}),
                      r'does not fit the model \(' + final + r'weight: checkpoint \[15, 64, 1, 1\], model '
                      r'\[17, 64, 1, 1\]; ' + final + r'bias: checkpoint \[15\], model \[17\]\)'),
    }


@pytest.mark.parametrize('variant', ['renamed', 'no head', 'extra key', '15 joints'])
def test_checkpoint_of_another_config_is_refused(module, tmp_path, repo_root, variant):
    state_dict, error = _variants(module.pose_model.state_dict())[variant]
    ckpt = tmp_path / 'other.pth'
    torch.save({'state_dict': state_dict, 'meta': {}}, ckpt)
    with pytest.raises(ValueError, match=rf'checkpoint .*other.pth {error}.*: not a checkpoint of this config'):
        export_onnx(str(repo_root / CONFIG), str(ckpt), str(tmp_path / 'x.onnx'))
    assert not (tmp_path / 'x.onnx').exists()  # not a random-weight model


def test_checkpoint_keys_the_model_renames_are_accepted(module, tmp_path, repo_root):
    """An mmpose heatmap checkpoint's head keys (renamed by IPRHead's load hook), its frozen grids (dropped), a
    DataParallel 'module.' prefix and no BatchNorm counters all load: the check runs after the model's hooks."""
    state_dict = {f"module.{k.replace('head.simplebaseline_head.', 'head.')}": v
                  for k, v in module.pose_model.state_dict().items() if not k.endswith('num_batches_tracked')}
    state_dict.update({'module.head.linspace_x': torch.zeros(W), 'module.head.linspace_y': torch.zeros(H)})
    ckpt = tmp_path / 'heatmap_style.pth'
    torch.save({'state_dict': state_dict}, ckpt)
    out = export_onnx(str(repo_root / CONFIG), str(ckpt), str(tmp_path / 'ok.onnx'))
    assert max(verify_onnx(out, module, random_images(2)).values()) < TOL


def test_bad_sizes_name_the_argument(module, tmp_path, repo_root, monkeypatch, capsys):
    with pytest.raises(ValueError, match=r'input_size must be two positive integers \(w, h\), got \(0, 0\)'):
        export_module(module, str(tmp_path / 'x.onnx'), input_size=(0, 0))
    with pytest.raises(ValueError, match='batch_size must be a positive integer, got 0'):
        export_module(module, str(tmp_path / 'x.onnx'), batch_size=0)
    # an opset without IsFinite failed deep inside torch's exporter (UnsupportedOperatorError: aten::isfinite)
    with pytest.raises(ValueError, match='opset must be 11 or later .*, got 9'):
        export_module(module, str(tmp_path / 'x.onnx'), opset=9)
    tool = str(repo_root / 'tools' / 'export_onnx.py')
    for flag, values in (('--input-size', ['0', '0']), ('--input-size', ['64', '-1']), ('--batch-size', ['0']),
                         ('--opset', ['9'])):
        monkeypatch.setattr(sys, 'argv', [tool, str(repo_root / CONFIG), '--out', str(tmp_path / 'x.onnx'), flag,
                                          *values])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(tool, run_name='__main__')
        assert exit_info.value.code == 2
        assert f'error: argument {flag}: must be' in capsys.readouterr().err
    assert not (tmp_path / 'x.onnx').exists()


def test_a_checkpoint_with_nan_weights_is_refused_and_verify_does_not_pass_nan(module, tmp_path, repo_root):
    state_dict = dict(module.pose_model.state_dict())
    state_dict['backbone.conv1.weight'] = state_dict['backbone.conv1.weight'].clone()
    state_dict['backbone.conv1.weight'][0, 0, 0, 0] = float('nan')
    ckpt = tmp_path / 'diverged.pth'
    torch.save({'state_dict': state_dict}, ckpt)
    with pytest.raises(ValueError, match=r'diverged.pth holds NaN or Inf in 1 tensor\(s\) \(backbone.conv1.weight\)'):
        export_onnx(str(repo_root / CONFIG), str(ckpt), str(tmp_path / 'x.onnx'))
    assert not (tmp_path / 'x.onnx').exists()
    # a NaN on either side is an error, not a difference of 0 (Python's max(0.0, nan) is 0.0)
    good = export_module(module, str(tmp_path / 'good.onnx'))
    broken = build_export_module(str(repo_root / CONFIG))
    broken.pose_model.load_state_dict(state_dict)
    with pytest.raises(ValueError, match=r'keypoints: torch gives NaN or Inf for an input of shape \(2, 3, 64, 64\)'):
        verify_onnx(good, broken, random_images(2))


def test_an_out_file_that_cannot_be_written_fails_before_the_export(tmp_path, repo_root):
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(NotADirectoryError, match=r'output file .*a_file/m.onnx: .*a_file is not a directory'):
        export_onnx(str(repo_root / CONFIG), str(tmp_path / 'missing.pth'), str(tmp_path / 'a_file' / 'm.onnx'))
    proc = subprocess.run([sys.executable, 'tools/export_onnx.py', CONFIG, '--out', str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=repo_root)
    assert proc.returncode == 2 and f'argument --out: output file {tmp_path} is a directory' in proc.stderr

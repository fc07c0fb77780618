"""A user's mistake at the command line ends a tool with one line naming the culprit (the file, the setting, the
flag), not a traceback from inside mmengine or torch: a config that does not parse or holds no model, a
``--cfg-options`` item that is no KEY=VALUE or cannot be applied, a device torch cannot use, a link that leads
nowhere, a count of zero."""
import importlib

import pytest
import torch

from ipr_plugin.paths import load_config, require_file
from utils import REPO_ROOT

CONFIG = REPO_ROOT / 'configs' / 'sample' / 'ipr_res18_coco-sample-64x64.py'


@pytest.mark.parametrize('name, text, expected', [
    ('broken.py', 'x = (\n', "is not valid Python: '(' was never closed (line 1)"),
    ('broken.json', '{"a":', 'cannot be read: JSONDecodeError: Expecting value'),
    ('fails.py', 'x = y\n', "cannot be read: NameError: name 'y' is not defined"),
])
def test_a_config_that_cannot_be_read_is_named(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_config(str(path))
    assert str(error.value).startswith(f'config {path} ') and expected in str(error.value)


def test_an_override_that_cannot_be_applied_names_the_config_and_the_flag():
    with pytest.raises(ValueError, match=r'--cfg-options \(cfg_options\) cannot be applied: KeyError: Index 9 '
                                         'exceeds the length of list'):
        load_config(str(CONFIG), {'val_dataloader.dataset.pipeline.9.type': 'X'})


def test_a_link_that_leads_nowhere_is_said_to_be_one(tmp_path):
    (tmp_path / 'a.py').symlink_to(tmp_path / 'b.py')
    (tmp_path / 'b.py').symlink_to(tmp_path / 'a.py')
    (tmp_path / 'dangling.pth').symlink_to(tmp_path / 'gone.pth')
    with pytest.raises(FileNotFoundError, match=r'config not found: .*a\.py \(a symbolic link in a loop of links\)'):
        require_file(str(tmp_path / 'a.py'), 'config')
    with pytest.raises(FileNotFoundError, match=r'checkpoint not found: .*dangling\.pth \(a symbolic link to '
                                                r'.*gone\.pth, which does not exist\)'):
        require_file(str(tmp_path / 'dangling.pth'), 'checkpoint')
    with pytest.raises(IsADirectoryError, match='config .* is a folder, not a file'):
        require_file(str(tmp_path), 'config')


def test_check_data_names_a_json_file_that_does_not_parse(tmp_path, capsys):
    from ipr_plugin.cli.check_data import main
    config = tmp_path / 'cfg.json'
    config.write_text('{"a":')
    with pytest.raises(SystemExit) as stopped:
        main([str(config), '--no-progress'])
    assert str(stopped.value.code).startswith(f'check_data: config {config} cannot be read: JSONDecodeError')


@pytest.mark.parametrize('tool, given', [('check_data', []), ('export_onnx', ['--out', 'model.onnx'])])
def test_a_cfg_options_item_without_a_value_is_a_usage_error(tool, given, capsys):
    parse_args = importlib.import_module(f'ipr_plugin.cli.{tool}').parse_args
    with pytest.raises(SystemExit) as stopped:
        parse_args([str(CONFIG), *given, '--cfg-options', 'model.head'])
    assert stopped.value.code == 2
    assert "argument --cfg-options: 'model.head' is not KEY=VALUE" in capsys.readouterr().err


def test_a_model_that_cannot_be_built_names_the_config_and_the_setting(tmp_path):
    from ipr_plugin.apis.onnx_export import build_pose_model
    with pytest.raises(ValueError, match=f"config {CONFIG}: its model cannot be built: TypeError: IPRHead got "
                                         "arguments it does not take: 'nosuch'"):
        build_pose_model(str(CONFIG), cfg_options={'model.head.nosuch': 1})
    with pytest.raises(ValueError, match=f'config {CONFIG}: its model cannot be built: ValueError: IPRHead: '
                                         '`num_joints` must be a whole number > 0, got -1'):
        build_pose_model(str(CONFIG), cfg_options={'model.head.num_joints': -1})
    with pytest.raises(ValueError, match=f'config {CONFIG}: its model cannot be built: RuntimeError: .*negative '
                                         'dimension -8'):
        build_pose_model(str(CONFIG), cfg_options={'model.backbone.base_channels': -8})
    no_model = tmp_path / 'data_only.py'
    no_model.write_text('train_dataloader = dict(batch_size=2)\n')
    with pytest.raises(ValueError, match=f'config {no_model} has no model'):
        build_pose_model(str(no_model))


@pytest.mark.parametrize('value', [0, -1, 2.5, True])
def test_the_head_refuses_a_joint_count_that_is_no_positive_whole_number(value):
    from ipr_plugin.models.heads.ipr_head import IPRHead
    with pytest.raises(ValueError, match=f'IPRHead: `num_joints` must be a whole number > 0, got {value!r}'):
        IPRHead(in_channels=8, in_featuremap_size=(2, 2), num_joints=value, deconv_out_channels=None)


def test_a_device_torch_cannot_use_is_named():
    from ipr_plugin.arguments import device_problem
    assert device_problem('cpu') is None
    assert device_problem('gpu') == "'gpu' is not a device torch knows (cpu, cuda, cuda:1, ...)"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:  # a GPU machine: the one past the last is named, with the ones there are
        assert device_problem('cuda:0') is None
        assert device_problem(f'cuda:{count}') == (f'cuda:{count}: torch sees {count} CUDA device(s) here '
                                                   f'(cuda:0 to cuda:{count - 1})')
    else:
        assert device_problem('cuda:0') == 'cuda:0: torch sees no CUDA device here (cpu runs on the CPU)'


def test_person_boxes_refuse_a_bad_device_before_any_work(capsys):
    from ipr_plugin.cli.make_person_boxes import parse_args
    with pytest.raises(SystemExit) as stopped:
        parse_args(['det.py', 'none', '--ann-file', 'a.json', '--img-dir', '.', '--out', 'o.json', '--device', 'gpu'])
    assert stopped.value.code == 2 and "argument --device: 'gpu' is not a device" in capsys.readouterr().err


def test_a_pose_config_given_as_the_detector_is_refused_before_the_images(coco_sample, tmp_path):
    """It built, and then failed on every image with one warning each (KeyError: 'bbox')."""
    from ipr_plugin.apis.person_boxes import make_person_boxes
    with pytest.raises(ValueError, match='is not a detector config: its model is a TopdownPoseEstimator'):
        make_person_boxes(str(CONFIG), None, str(coco_sample / 'test_coco.json'), str(coco_sample),
                          str(tmp_path / 'boxes.json'), progress=False)
    assert not (tmp_path / 'boxes.json').exists()


def test_a_broken_config_or_a_missing_gpu_stops_the_benchmark_before_its_data(monkeypatch, tmp_path, capsys):
    """Both were found only by the workers, after the synthetic set was written, and appended a section of
    errors to the report."""
    from ipr_plugin.benchmark import cli
    monkeypatch.setattr(cli, 'prepare_data', lambda *args: pytest.fail('the data was written'))
    broken = tmp_path / 'broken.py'
    broken.write_text('x = (\n')
    out = ['--tiny', '--out', str(tmp_path / 'bench.md')]
    with pytest.raises(SystemExit) as stopped:
        cli.main(out + ['--configs', str(broken)])
    assert stopped.value.code == 2
    assert f'argument --configs: config {broken} is not valid Python' in capsys.readouterr().err
    if not torch.cuda.is_available():  # (the benchmark's --device is cuda or cpu: cuda works on a GPU machine)
        with pytest.raises(SystemExit) as stopped:
            cli.main(out + ['--device', 'cuda'])
        assert stopped.value.code == 2 and 'argument --device: cuda: torch sees no CUDA' in capsys.readouterr().err
    assert not (tmp_path / 'bench.md').exists()


@pytest.mark.parametrize('flag, value, expected', [('--iters', '0', '--iters must be at least 1, got 0'),
                                                   ('--num-val', '0', '--num-val must be at least 1, got 0'),
                                                   ('--lr', '0', '--lr must be a number > 0, got 0.0')])
def test_the_study_refuses_a_count_it_cannot_run_with_before_its_data(tmp_path, flag, value, expected):
    """Every row failed after the data was written, and a section of failed rows was appended to the report."""
    from ipr_plugin.apis.accuracy_study import build_parser, run_study
    args = build_parser().parse_args(['--tiny', '--work-dir', str(tmp_path / 'work'), flag, value])
    with pytest.raises(SystemExit, match=expected):
        run_study(args, command='test')
    assert not (tmp_path / 'work').exists()


def test_a_log_without_training_lines_is_said_once(tmp_path):
    from ipr_plugin.apis.training_curves import read_curves
    log = tmp_path / 'scalars.json'
    log.write_text('{"coco/AP": 0.5, "step": 1}\n')
    with pytest.raises(ValueError) as error:
        read_curves(str(log))
    assert str(error.value) == f'nothing to plot: {log}: no training lines (a validation run?)'

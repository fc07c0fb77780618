"""``tools/check_data.py`` lists every bad image of a config's data at once, on copies of the COCO sample."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from mmpose.datasets.transforms import LoadImage
from mmpose.registry import TRANSFORMS
from PIL import Image

from ipr_plugin.apis.data_check import SPLITS, DataProblem, check_data, format_report, load_error_message
from utils import writable_copy

FAST_CONFIG = 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'
MMPOSE_IPR = 'mmpose::body_2d_keypoint/integral_regression/coco/ipr_res50_8xb64-210e_coco-256x256.py'


def _options(root: Path) -> dict:
    data = dict(data_root=f'{root}/', ann_file='test_coco.json', data_prefix=dict(img=''))
    val = dict(data, bbox_file=f'{root}/test_coco_det_AP_H_56.json')
    return {'train_dataloader.dataset': data, 'val_dataloader.dataset': val, 'test_dataloader.dataset': val}


def _cli_options(root: Path) -> List[str]:
    return [f'{key}.{name}={value}' for key, data in _options(root).items() for name, value in data.items()
            if name != 'data_prefix'] + [f'{split}_dataloader.dataset.data_prefix.img=' for split in SPLITS]


@pytest.fixture
def broken(coco_sample, tmp_path) -> Path:
    """The sample with one image resized, one deleted and one that is not an image."""
    root = tmp_path / 'sample'
    writable_copy(coco_sample, root)
    with Image.open(root / '000000000785.jpg') as image:
        image.resize((320, 212)).save(root / '000000000785.jpg')
    (root / '000000040083.jpg').unlink()
    (root / '000000196141.jpg').write_bytes(b'\xff\xd8 not a jpeg at all' * 50)
    return root


def test_the_sample_passes_and_the_test_split_is_the_val_split(coco_sample):
    report = check_data(FAST_CONFIG, workers=0, cfg_options=_options(coco_sample), progress=False)
    assert report['problems'] == []
    assert report['skipped'] == dict(test='the same dataset as val')
    assert report['splits']['train'] == dict(report['splits']['train'], dataset='IPRCocoDataset', built=True,
                                             samples=12, images=4, loader='IPRLoadImage', sizes_compared=True)
    assert report['splits']['val']['samples'] == 118 and report['splits']['val']['images'] == 4
    text = format_report(report)
    assert 'val: IPRCocoDataset, 118 samples, 4 images checked with IPRLoadImage in ' in text
    assert text.endswith('test: skipped, the same dataset as val\n0 problems')


def test_every_bad_image_is_listed_by_the_tool(broken):
    out = broken / 'report.json'
    cmd = [sys.executable, 'tools/check_data.py', FAST_CONFIG, '--workers', '2',
           '--no-progress', '--out', str(out), '--cfg-options', *_cli_options(broken)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    problems = json.loads(out.read_text())['problems']
    # three bad images in each split: the train and val samples both cover every image of the sample
    assert sorted((p['split'], Path(p['what']).name) for p in problems) == sorted(
        (split, name) for split in ('train', 'val')
        for name in ('000000000785.jpg', '000000040083.jpg', '000000196141.jpg'))
    by_image = {Path(p['what']).name: p['message'] for p in problems if p['split'] == 'val'}
    assert 'loads as 320x212' in by_image['000000000785.jpg'] and 'gives 640x425' in by_image['000000000785.jpg']
    # which of the two: mmpose's LoadImage says of both "Please check whether the file exists"
    assert by_image['000000040083.jpg'] == f'{broken / "000000040083.jpg"} does not exist'
    assert by_image['000000196141.jpg'] == f'{broken / "000000196141.jpg"} (1000 bytes) cannot be decoded as an image'
    assert proc.stdout.strip().endswith(f'every problem and note: {out}')
    listed = proc.stdout.split('6 problems:\n', 1)[1].splitlines()[:-1]  # the last line names the report file
    assert len(listed) == 6 and sum(str(broken / '000000040083.jpg') in line for line in listed) == 2, proc.stdout


def test_the_tool_says_how_to_see_the_problems_it_did_not_list(broken, capsys):
    from ipr_plugin.cli import check_data as tool
    assert tool.main([FAST_CONFIG, '--splits', 'val', '--workers', '0', '--no-progress', '--max-listed', '1',
                      '--cfg-options', *_cli_options(broken)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == ['- val: 2 more problems, not listed',
                          '(--max-listed 0 lists every one, --out FILE writes them all to a JSON file)']


def test_a_failed_load_says_which_of_missing_empty_or_undecodable_it_is(tmp_path):
    """mmpose's LoadImage says "Please check whether the file exists" of each; what the error says otherwise stays."""
    failed = AssertionError('`failed to load image: x` occurs when loading `x`.Please check whether the file exists.')
    (tmp_path / 'empty.jpg').write_bytes(b'')
    (tmp_path / 'text.jpg').write_bytes(b'not an image')
    assert load_error_message(str(tmp_path / 'no.jpg'), failed) == f'{tmp_path / "no.jpg"} does not exist'
    assert load_error_message(str(tmp_path / 'empty.jpg'), failed) == f'{tmp_path / "empty.jpg"} is empty (0 bytes)'
    assert load_error_message(str(tmp_path / 'text.jpg'), failed) == \
        f'{tmp_path / "text.jpg"} (12 bytes) cannot be decoded as an image'
    assert load_error_message(str(tmp_path / 'text.jpg'), MemoryError('big')) == 'MemoryError: big'
    assert load_error_message('s3://bucket/a.jpg', failed).startswith('AssertionError: `failed to load image')


def test_a_dataset_that_cannot_be_built_is_a_problem_and_the_rest_is_checked(coco_sample, tmp_path):
    options = _options(coco_sample)
    options['val_dataloader.dataset'] = dict(options['val_dataloader.dataset'], bbox_file=str(tmp_path / 'no.json'))
    report = check_data(FAST_CONFIG, splits=['val', 'train'], cfg_options=options, progress=False)
    [problem] = report['problems']
    assert problem.split == 'val' and problem.what == 'dataset'
    assert 'detection (bbox) file not found' in problem.message and str(tmp_path / 'no.json') in problem.message
    assert report['splits']['train']['images'] == 4
    assert 'val: IPRCocoDataset could not be built' in format_report(report)


def test_mmposes_own_config_is_checked_without_sizes(broken):
    report = check_data(MMPOSE_IPR, splits=['train'], cfg_options=_options(broken), progress=False)
    assert report['splits']['train']['dataset'] == 'CocoDataset'
    assert not report['splits']['train']['sizes_compared']
    # the missing and the undecodable image, not the resized one: CocoDataset does not know its size
    assert sorted(Path(p.what).name for p in report['problems']) == ['000000040083.jpg', '000000196141.jpg']
    assert "sizes not compared (CocoDataset does not keep the annotation file's image sizes)" in format_report(report)


def test_a_wrapped_dataset_is_checked_image_by_image(broken):
    """RepeatDataset's inner dataset has the pipeline: its images are loaded once each and their sizes compared."""
    options = _options(broken)
    options['train_dataloader.dataset'] = dict(type='RepeatDataset', times=3, _delete_=True, dataset=dict(
        type='IPRCocoDataset', data_mode='topdown', pipeline=[dict(type='IPRLoadImage')],
        **options['train_dataloader.dataset']))
    report = check_data(FAST_CONFIG, splits=['train'], cfg_options=options, progress=False)
    train = report['splits']['train']
    assert (train['dataset'], train['samples'], train['images'], train['loader']) == (
        'RepeatDataset', 36, 4, 'IPRLoadImage') and train['sizes_compared']
    assert sorted(Path(p.what).name for p in report['problems']) == [
        '000000000785.jpg', '000000040083.jpg', '000000196141.jpg']


@TRANSFORMS.register_module(force=True)
class DyingLoadImage(LoadImage):
    """mmpose's LoadImage, except that the process loading ``fatal`` dies with ``signum``, as one the
    out-of-memory killer ends (SIGKILL) or one whose decoder crashes (SIGSEGV) does."""

    def __init__(self, fatal: str, signum: int, **kwargs):
        super().__init__(**kwargs)
        self.fatal, self.signum = fatal, signum

    def transform(self, results: dict) -> dict:
        if Path(results['img_path']).name == self.fatal:
            import faulthandler
            faulthandler.disable()  # pytest's would print a crash report into the log for this deliberate death
            os.kill(os.getpid(), self.signum)
        return super().transform(results)


@pytest.mark.parametrize('signum, likely', [(signal.SIGKILL, 'out-of-memory killer'),
                                            (signal.SIGSEGV, 'crash inside the image decoder')])
def test_a_worker_that_dies_costs_only_the_image_it_was_loading(broken, signum, likely):
    """One worker, killed on the second image of its first chunk: a new one takes the rest of the share."""
    options = _options(broken)
    options['train_dataloader.dataset.pipeline'] = [dict(type='DyingLoadImage', fatal='000000040083.jpg',
                                                         signum=int(signum))]
    report = check_data(FAST_CONFIG, splits=['train'], workers=1, cfg_options=options, progress=False)
    assert report['splits']['train']['images'] == 4 and report['splits']['train']['loader'] == 'DyingLoadImage'
    messages = {Path(p.what).name: p.message for p in report['problems']}
    assert sorted(messages) == ['000000000785.jpg', '000000040083.jpg', '000000196141.jpg']
    dead = messages['000000040083.jpg']
    assert f'loading {broken / "000000040083.jpg"} was killed by {signal.Signals(signum).name}' in dead
    assert likely in dead
    assert 'loads as 320x212' in messages['000000000785.jpg']  # checked by the worker that replaced it
    # the problems are listed in sample order, whichever worker found them
    images = [image['file_name'] for image in json.loads((broken / 'test_coco.json').read_text())['images']]
    assert [Path(p.what).name for p in report['problems']] == [name for name in images if name in messages]


def test_a_training_image_whose_decoding_the_pipeline_defers_is_decoded_whole(coco_sample, tmp_path):
    """The fast config's train loader (IPRLoadImage(decode_region=True)) reads only a JPEG's header; the check
    decodes the whole file, so a scan that does not decode is found before training."""
    root = tmp_path / 'sample'
    writable_copy(coco_sample, root)
    data = (root / '000000196141.jpg').read_bytes()
    scan = data.index(b'\xff\xda')
    (root / '000000196141.jpg').write_bytes(data[:scan] + b'\xff\xda\x00\x02\x00\x00' + bytes(64) + b'\xff\xd9')
    report = check_data(FAST_CONFIG, splits=['train'], workers=0, cfg_options=_options(root), progress=False)
    assert report['splits']['train']['loader'] == 'IPRLoadImage'
    assert [(Path(p.what).name, p.message) for p in report['problems']] == [
        ('000000196141.jpg', f'{root / "000000196141.jpg"} ({scan + 72} bytes) cannot be decoded as an image')]


@pytest.fixture
def turned(coco_sample, tmp_path) -> Path:
    """The sample with two images tagged with an EXIF orientation: 3 (turned 180 degrees: same size when decoded)
    and 6 (turned 90 degrees: width and height swap)."""
    root = tmp_path / 'sample'
    writable_copy(coco_sample, root)
    for name, orientation in (('000000000785.jpg', 3), ('000000040083.jpg', 6)):
        with Image.open(root / name) as image:
            exif = image.getexif()
            exif[0x0112] = orientation
            image.save(root / name, exif=exif, quality=95)
    return root


def test_exif_turned_images_are_notes_or_named_as_the_cause_of_a_size_problem(turned):
    report = check_data(FAST_CONFIG, splits=['val'], cfg_options=_options(turned), progress=False)
    [problem] = report['problems']
    assert Path(problem.what).name == '000000040083.jpg' and 'EXIF orientation 6' in problem.message
    [note] = report['notes']  # same size turned: the annotation file cannot tell, so it is a note
    assert Path(note.what).name == '000000000785.jpg'
    assert f'IPRLoadImage loads {turned / "000000000785.jpg"} turned 180 degrees' in note.message
    assert 'EXIF orientation 3' in note.message and 'color_ignore_orientation' in note.message
    assert format_report(report).endswith(f'1 note (worth a look, not counted as problems):\n- val: {note.message}')
    # mmpose's dataset does not know the sizes: both are notes
    report = check_data(MMPOSE_IPR, splits=['val'], cfg_options=_options(turned), progress=False)
    assert report['problems'] == []
    notes = {Path(n.what).name: n.message for n in report['notes']}
    assert sorted(notes) == ['000000000785.jpg', '000000040083.jpg']
    assert 'LoadImage loads' in notes['000000040083.jpg'] and 'turned 90 degrees clockwise' in notes['000000040083.jpg']


def test_a_loader_that_keeps_the_stored_pixels_has_no_exif_notes(turned):
    options = _options(turned)
    options['val_dataloader.dataset.pipeline'] = [dict(type='IPRLoadImage', color_type='color_ignore_orientation')]
    report = check_data(FAST_CONFIG, splits=['val'], workers=1, cfg_options=options, progress=False)
    assert report['problems'] == [] and report['notes'] == [] and report['splits']['val']['images'] == 4


def test_a_report_file_that_cannot_be_written_fails_before_the_check(coco_sample, tmp_path):
    (tmp_path / 'a_file').write_text('')
    cmd = [sys.executable, 'tools/check_data.py', FAST_CONFIG, '--out', str(tmp_path / 'a_file' / 'r.json'),
           '--cfg-options', *_cli_options(coco_sample)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ''
    assert f'argument --out: report file {tmp_path}/a_file/r.json: {tmp_path}/a_file is not a directory' in proc.stderr


def test_a_report_file_that_is_an_input_is_refused_before_the_check(coco_sample, tmp_path, capsys):
    """--out naming the config, or an annotation or detection file the config reads, would replace it with the
    report: refused in one line naming the file, which stays as it was."""
    from ipr_plugin.cli import check_data as tool
    sample = tmp_path / 'sample'
    writable_copy(coco_sample, sample)
    config = tmp_path / 'config.py'
    config.write_text(f"_base_ = ['{Path(FAST_CONFIG).resolve()}']\n")
    for out in (config, sample / 'test_coco.json', sample / 'test_coco_det_AP_H_56.json'):
        before = out.read_bytes()
        with pytest.raises(SystemExit) as stopped:
            tool.main([str(config), '--splits', 'val', '--no-progress', '--out', str(out), '--cfg-options',
                       *_cli_options(sample)])
        assert f'report file {out} is an input of this run' in str(stopped.value)
        assert out.read_bytes() == before and capsys.readouterr().out == ''
    # the val split's annotation file as its evaluator names it (mmpose's configs: data_root + ann_file)
    with pytest.raises(SystemExit, match='is an input of this run'):
        tool.main([str(config), '--out', str(sample / 'test_coco.json'), '--cfg-options',
                   'val_evaluator.ann_file=' + str(sample / 'test_coco.json')])


def test_a_python_style_config_that_cannot_be_built_gives_a_whole_report(tmp_path):
    """In mmengine's Python-style configs ``type`` is the class itself: the report names it, and JSON holds it.
    The report file is written whole or not at all (``write_json``)."""
    config = tmp_path / 'python_style.py'
    config.write_text('from mmpose.datasets import CocoDataset\n\n'
                      "train_dataloader = dict(dataset=dict(type=CocoDataset, data_root='/nonexistent/', "
                      "ann_file='a.json', pipeline=[]))\n")
    out = tmp_path / 'report.json'
    proc = subprocess.run([sys.executable, 'tools/check_data.py', str(config), '--splits', 'train', '--no-progress',
                           '--out', str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['splits']['train']['dataset'] == 'CocoDataset' and not report['splits']['train']['built']
    assert sorted(os.listdir(tmp_path)) == ['python_style.py', 'report.json']


def test_write_json_leaves_no_partial_file(tmp_path):
    from ipr_plugin.arguments import write_json
    out = tmp_path / 'new' / 'out.json'
    write_json(str(out), dict(a=[1, 2]), indent=1)
    assert json.loads(out.read_text()) == dict(a=[1, 2])
    with pytest.raises(TypeError, match='not JSON serializable'):
        write_json(str(out), dict(a=object()))
    assert json.loads(out.read_text()) == dict(a=[1, 2]) and os.listdir(out.parent) == ['out.json']
    (out.parent / 'link.json').symlink_to(out)  # written through, as open() writes
    write_json(str(out.parent / 'link.json'), [3])
    assert (out.parent / 'link.json').is_symlink() and json.loads(out.read_text()) == [3]


def test_a_missing_config_ends_the_tool_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/check_data.py', str(tmp_path / 'nope.py')], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith('check_data: config not found: ')


def test_a_file_without_any_dataloader_is_an_error_not_zero_problems(coco_sample, tmp_path):
    """An annotation file (mmengine loads JSON as a config) or a config without dataloaders: every split would be
    skipped and the tool would report "0 problems" with exit status 0, having checked nothing."""
    ann = coco_sample / 'test_coco.json'
    proc = subprocess.run([sys.executable, 'tools/check_data.py', str(ann), '--no-progress'], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and proc.stdout == '' and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'check_data: {ann} has nothing to check: no train_dataloader or val_dataloader or test_dataloader with a '
        'dataset in it')
    config = tmp_path / 'model_only.py'
    config.write_text('model = dict(type="TopdownPoseEstimator")\n')
    with pytest.raises(ValueError, match=rf'^check_data: {config} has nothing to check: no test_dataloader with a '
                       r'dataset in it \(only test asked for\)'):
        check_data(str(config), ['test'], progress=False)
    # a config that lacks only some splits is checked as before: the others are
    options = dict(_options(coco_sample), val_dataloader=None, test_dataloader=None)
    report = check_data(FAST_CONFIG, cfg_options=options, progress=False)
    assert list(report['splits']) == ['train'] and report['problems'] == []
    assert report['skipped'] == dict(val='no dataloader in the config', test='no dataloader in the config')


def test_the_terminal_report_lists_a_few_problems_per_split_and_counts_the_rest():
    """A folder resized as a whole makes every image a problem: the listing stops, and says how many more."""
    problems = [DataProblem(split, f'{split}/{i}.jpg', f'{split}/{i}.jpg loads at 2x the annotated size')
                for split, count in (('train', 7), ('val', 2)) for i in range(count)]
    report = dict(splits={}, skipped={}, problems=problems, notes=[])
    text = format_report(report, max_listed=3)
    assert text.splitlines() == ['9 problems:', *[f'- train: train/{i}.jpg loads at 2x the annotated size'
                                                  for i in range(3)],
                                 '- train: 4 more problems, not listed',
                                 *[f'- val: val/{i}.jpg loads at 2x the annotated size' for i in range(2)]]
    assert format_report(report, max_listed=0).count('loads at 2x') == format_report(report).count('loads at') == 9


def test_a_loading_process_ended_by_any_signal_is_reported_by_name_or_number():
    """Python names no real-time signal: the report itself failed with ValueError."""
    from ipr_plugin.apis.data_check import _death_message
    assert 'was killed by SIGKILL (the out-of-memory killer sends it?)' in _death_message(-9, 'a.jpg')
    assert 'the process loading a.jpg was killed by signal 40;' in _death_message(-40, 'a.jpg')
    assert 'exited with status 3' in _death_message(3, 'a.jpg')

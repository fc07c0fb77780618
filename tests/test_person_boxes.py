"""Person boxes from a real (randomly initialised) mmdet RTMDet-tiny: file format, mmpose round trip,
unreadable images, missing or bad inputs."""
import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ipr_plugin.apis.person_boxes import make_person_boxes, person_records, resolve_person_class

DET_CONFIG = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
# 320 px instead of 640 (test pipeline: Load, Resize, Pad, ...): 4x fewer pixels. A random detector's
# labels all go to whichever class its random biases favour, so the head is person-only (label 0, 'person'
# in the COCO classes mmdet assumes without a checkpoint); and its random box offsets are as often negative
# as not (inverted boxes, dropped), so they go through exp as in the larger RTMDets.
RANDOM_DET = {'test_dataloader.dataset.pipeline.1.scale': (320, 320),
              'test_dataloader.dataset.pipeline.2.size': (320, 320),
              'model.bbox_head.num_classes': 1, 'model.bbox_head.exp_on_reg': True}
RECORD_KEYS = {'image_id', 'category_id', 'bbox', 'score'}


def check_records(records, image_ids):
    for r in records:
        assert set(r) == RECORD_KEYS and r['category_id'] == 1 and r['image_id'] in image_ids
        x, y, w, h = r['bbox']
        assert all(np.isfinite(r['bbox'])) and w > 0 and h > 0
        assert 0.0 <= r['score'] <= 1.0


def test_person_records_converts_and_filters():
    xyxy = np.array([[10, 20, 50, 100], [0, 0, 5, 5], [1, 1, 1, 9], [3, 4, 13, 24]], dtype=np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.7], dtype=np.float32)
    labels = np.array([0, 2, 0, 0])
    records, degenerate = person_records(xyxy, scores, labels, image_id=7, label=0, score_thr=0.6)
    # box 0 below threshold, box 1 not a person, box 2 zero width
    assert degenerate == 1
    assert records == [dict(image_id=7, category_id=1, bbox=[3.0, 4.0, 10.0, 20.0], score=pytest.approx(0.7))]
    records, _ = person_records(xyxy, scores, labels, image_id=7, label=0, score_thr=0.0)
    assert [r['bbox'] for r in records] == [[3.0, 4.0, 10.0, 20.0], [10.0, 20.0, 40.0, 80.0]]  # by score


def test_resolve_person_class():
    assert resolve_person_class({'classes': ('car', 'Person')}) == 1
    assert resolve_person_class({'classes': ('car', 'pedestrian')}, 'pedestrian') == 1
    assert resolve_person_class(None) == 0
    assert resolve_person_class(None, 3) == 3  # no classes listed, no head count: taken as given
    assert resolve_person_class({'classes': ('car', 'person')}, None, num_classes=2) == 1
    with pytest.raises(ValueError, match='person'):
        resolve_person_class({'classes': ('car', 'bus')})
    # a label the detector never predicts would silently drop every box
    with pytest.raises(ValueError, match=r'person class 3 is out of range: the detector has 1 class \(labels 0 to 0'):
        resolve_person_class({'classes': ('car', )}, 3)
    with pytest.raises(ValueError, match='person class 1 is out of range: the detector has 1 class'):
        resolve_person_class({'classes': ('car', 'person')}, None, num_classes=1)  # the head's count decides
    with pytest.raises(ValueError, match='person class -1 is out of range'):
        resolve_person_class(None, -1)


def test_boxes_file_loads_in_mmpose(coco_sample, tmp_path):
    from mmpose.datasets import CocoDataset

    from mmengine.registry import DefaultScope

    out = tmp_path / 'boxes.json'
    with DefaultScope.overwrite_default_scope('mmpose'):  # as in a pose script that makes its boxes first
        stats = make_person_boxes(DET_CONFIG, None, str(coco_sample / 'test_coco.json'), str(coco_sample),
                                  str(out), score_thr=0.0, cfg_options=RANDOM_DET, progress=False)
        assert DefaultScope.get_current_instance().scope_name == 'mmpose'  # mmdet's scope does not stay behind
    image_ids = {img['id'] for img in json.loads((coco_sample / 'test_coco.json').read_text())['images']}
    records = json.loads(out.read_text())
    print(f"{stats['num_boxes']} boxes ({stats['num_degenerate']} without area dropped) from "
          f"{stats['num_processed']} images in {stats['seconds']:.1f} s")
    assert stats['num_images'] == stats['num_processed'] == len(image_ids) == 4
    assert stats['num_unreadable'] == 0 and stats['person_class'] == 0
    assert len(records) == stats['num_boxes'] > 0
    check_records(records, image_ids)

    dataset = CocoDataset(data_root=str(coco_sample), ann_file='test_coco.json', bbox_file=str(out),
                          data_mode='topdown', data_prefix=dict(img=''), test_mode=True, pipeline=[])
    assert len(dataset) == len(records)
    first = dataset.get_data_info(0)
    x, y, w, h = records[0]['bbox']
    assert first['img_id'] == records[0]['image_id']
    np.testing.assert_allclose(first['bbox'][0], [x, y, x + w, y + h], rtol=1e-6)
    assert os.path.isfile(first['img_path'])


def test_tool_skips_unreadable_images(coco_sample, tmp_path, repo_root):
    ann = json.loads((coco_sample / 'test_coco.json').read_text())
    real = ann['images'][:2]
    img_dir = tmp_path / 'images'
    img_dir.mkdir()
    for img in real:
        (img_dir / img['file_name']).symlink_to(coco_sample / img['file_name'])
    (img_dir / 'corrupt.jpg').write_bytes(b'\xff\xd8 definitely not a jpeg ' * 10)
    # decodes, but its 2 px side resizes to 0 in the detector's pipeline: OpenCV raises there
    Image.new('RGB', (2, 3000)).save(img_dir / 'thin.png')
    ann['images'] = real + [dict(real[0], id=1, file_name='corrupt.jpg'),
                            dict(real[0], id=2, file_name='missing.jpg'), dict(real[0], id=3, file_name='thin.png')]
    ann_file = tmp_path / 'ann.json'
    ann_file.write_text(json.dumps(ann))
    out = tmp_path / 'boxes.json'

    cmd = [sys.executable, str(repo_root / 'tools' / 'make_person_boxes.py'), DET_CONFIG, 'none',
           '--ann-file', str(ann_file), '--img-dir', str(img_dir), '--out', str(out), '--score-thr', '0',
           '--cfg-options'] + [f"{k}={v}".replace(' ', '') for k, v in RANDOM_DET.items()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print(proc.stdout, proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith('WARNING')]
    assert any(str(img_dir / 'corrupt.jpg') in line for line in warnings)
    assert any(str(img_dir / 'missing.jpg') in line for line in warnings)
    assert '2 unreadable image(s)' in proc.stdout
    thin = img_dir / 'thin.png'
    assert any(f'skipping image {thin}: the detector failed on it (error: ' in line for line in warnings)
    assert f"1 image(s) the detector failed on skipped: {img_dir / 'thin.png'} (error: " in proc.stdout
    records = json.loads(out.read_text())
    check_records(records, {img['id'] for img in real})
    assert {r['image_id'] for r in records} == {img['id'] for img in real}


def test_no_person_box_above_the_threshold_writes_nothing(coco_sample, tmp_path):
    """mmpose's dataset refuses a detection file without boxes: the tool says so, not the run that reads it."""
    out = tmp_path / 'boxes.json'
    with pytest.raises(RuntimeError, match=r'no person box scored >= 1.0 in the 1 images detected; nothing written '
                       r'to .*boxes.json; the highest was 0\.\d+: lower the score threshold'):
        make_person_boxes(DET_CONFIG, None, str(coco_sample / 'test_coco.json'), str(coco_sample), str(out),
                          score_thr=1.0, cfg_options=RANDOM_DET, max_images=1, progress=False)
    assert not out.exists()


def test_a_detector_without_any_box_of_the_class_names_the_weights_not_the_threshold(coco_sample, repo_root,
                                                                                      tmp_path):
    """No threshold can help where the detector gives no box of the person class at all (random or foreign
    weights, a wrong --person-class): the tool says so, in one line, without a traceback."""
    out = tmp_path / 'boxes.json'
    nothing = dict(RANDOM_DET, **{'model.test_cfg.score_thr': 1.1})  # mmdet keeps no box at all
    cmd = [sys.executable, str(repo_root / 'tools' / 'make_person_boxes.py'), DET_CONFIG, 'none',
           '--ann-file', str(coco_sample / 'test_coco.json'), '--img-dir', str(coco_sample), '--out', str(out),
           '--score-thr', '0', '--max-images', '1', '--no-progress',
           '--cfg-options'] + [f"{k}={v}".replace(' ', '') for k, v in nothing.items()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert ('make_person_boxes: no person box scored >= 0.0 in the 1 images detected; nothing written to '
            f'{out}; no box of class 0 at all: check the checkpoint') in proc.stderr, proc.stderr[-3000:]
    assert not out.exists()


def test_missing_inputs_raise_with_path(coco_sample, tmp_path):
    missing = str(tmp_path / 'nope.json')
    with pytest.raises(FileNotFoundError, match='nope.json'):
        make_person_boxes(DET_CONFIG, None, missing, str(coco_sample), str(tmp_path / 'out.json'))
    with pytest.raises(FileNotFoundError, match='no_config.py'):
        make_person_boxes(str(tmp_path / 'no_config.py'), None, str(coco_sample / 'test_coco.json'),
                          str(coco_sample), str(tmp_path / 'out.json'))
    assert not (tmp_path / 'out.json').exists()


@pytest.fixture
def no_detector(monkeypatch):
    """Fails the test if the detector is built: these inputs must be refused before (in well under a second)."""
    import mmdet.apis

    def built(*args, **kwargs):
        raise AssertionError('the detector was built before the bad input was refused')

    monkeypatch.setattr(mmdet.apis, 'init_detector', built)


def test_bad_inputs_are_refused_before_the_detector_runs(coco_sample, tmp_path, no_detector):
    ann, img_dir, out = str(coco_sample / 'test_coco.json'), str(coco_sample), tmp_path / 'out' / 'boxes.json'

    def run(**kwargs):
        args = dict(det_config=DET_CONFIG, det_checkpoint=None, ann_file=ann, img_dir=img_dir, out_file=str(out))
        make_person_boxes(**dict(args, **kwargs), progress=False)

    for score_thr in (1.5, -0.1, float('nan')):
        with pytest.raises(ValueError, match='score_thr must lie in'):
            run(score_thr=score_thr)
    for max_images in (0, -1):
        with pytest.raises(ValueError, match=f'max_images must be a positive number of images, got {max_images}'):
            run(max_images=max_images)
    with pytest.raises(FileNotFoundError, match='image folder not found: .*no_images'):
        run(img_dir=str(tmp_path / 'no_images'))
    # a folder without any of the listed images (another split's, a parent folder): before the detector is built
    with pytest.raises(FileNotFoundError, match=r'none of the 4 images listed in .*test_coco.json is in '
                       rf'{tmp_path} \(e.g. .*\.jpg\): is it the image folder of that file\?'):
        run(img_dir=str(tmp_path))
    (tmp_path / 'a_dir.json').mkdir()
    with pytest.raises(IsADirectoryError, match='a_dir.json is a directory'):
        run(out_file=str(tmp_path / 'a_dir.json'))
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(NotADirectoryError, match='a_file is not a directory'):
        run(out_file=str(tmp_path / 'a_file' / 'boxes.json'))
    not_a_checkpoint = tmp_path / 'weights.pth'
    not_a_checkpoint.write_text('these are not weights\n')
    with pytest.raises(ValueError, match=r"weights.pth is not a PyTorch checkpoint \(it starts with b'thes'"):
        run(det_checkpoint=str(not_a_checkpoint))
    empty = tmp_path / 'empty.json'
    empty.write_text(json.dumps(dict(images=[], annotations=[])))
    with pytest.raises(ValueError, match='empty.json lists no images'):
        run(ann_file=str(empty))
    assert not out.parent.exists()
    # the annotation file given as the output too (both under data/coco/...): it would be replaced by the boxes
    copy = tmp_path / 'ann.json'
    copy.write_bytes((coco_sample / 'test_coco.json').read_bytes())
    with pytest.raises(ValueError, match=r'ann.json is an input of this run'):
        run(ann_file=str(copy), out_file=str(tmp_path / '.' / 'ann.json'))
    assert copy.read_bytes() == (coco_sample / 'test_coco.json').read_bytes()


def test_tool_names_the_flag(tmp_path, repo_root, monkeypatch, capsys):
    tool = str(repo_root / 'tools' / 'make_person_boxes.py')
    for flag, value in (('--score-thr', '1.5'), ('--max-images', '0')):
        monkeypatch.setattr(sys, 'argv', [tool, DET_CONFIG, 'none', '--ann-file', 'a.json', '--img-dir', '.',
                                          '--out', str(tmp_path / 'b.json'), flag, value])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(tool, run_name='__main__')
        assert exit_info.value.code == 2
        assert f'error: argument {flag}: must' in capsys.readouterr().err


def test_the_tool_ends_with_one_line_on_a_missing_input_or_an_input_given_as_its_output(coco_sample, tmp_path,
                                                                                       repo_root):
    tool = [sys.executable, str(repo_root / 'tools' / 'make_person_boxes.py'), DET_CONFIG, 'none']
    missing = subprocess.run(tool + ['--ann-file', str(tmp_path / 'nope.json'), '--img-dir', str(coco_sample),
                                     '--out', str(tmp_path / 'boxes.json')],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and 'Traceback' not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith('make_person_boxes: ')
    assert 'nope.json' in missing.stderr
    ann = str(coco_sample / 'test_coco.json')
    same = subprocess.run(tool + ['--ann-file', ann, '--img-dir', str(coco_sample), '--out', ann],
                          capture_output=True, text=True, timeout=300)
    assert same.returncode == 2 and 'error: argument --out:' in same.stderr and 'is an input of this run' in same.stderr


def test_no_readable_image_or_a_foreign_person_class_fails(coco_sample, tmp_path, monkeypatch):
    out = tmp_path / 'boxes.json'
    ann = coco_sample / 'test_coco.json'
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    for image in json.loads(ann.read_text())['images']:
        (corrupt / image['file_name']).write_bytes(b'not a jpeg')
    with pytest.raises(RuntimeError, match=r'none of the 4 images listed in .*test_coco.json could be read from '):
        make_person_boxes(DET_CONFIG, None, str(ann), str(corrupt), str(out), cfg_options=RANDOM_DET,
                          progress=False)
    assert not out.exists()  # an empty list would read as "nobody in any image"
    # a detector that fails on every image alike stops after the first few, not after one warning per image
    import ipr_plugin.apis.person_boxes as module
    monkeypatch.setattr(module, 'SAME_ERROR_STOP', 2)
    with pytest.raises(RuntimeError, match=r'the detector failed on each of the first 2 images with the same error '
                       r'\(\w+: .*\): is the config an mmdet detector'):
        make_person_boxes(DET_CONFIG, None, str(ann), str(coco_sample), str(out), progress=False,
                          cfg_options=dict(RANDOM_DET, **{'test_dataloader.dataset.pipeline.1.scale': (0, 0)}))
    assert not out.exists()
    # RANDOM_DET's head predicts 1 class, though the COCO names (80) are listed: label 5 never occurs
    with pytest.raises(ValueError, match=r'person class 5 is out of range: the detector has 1 class '):
        make_person_boxes(DET_CONFIG, None, str(coco_sample / 'test_coco.json'), str(coco_sample), str(out),
                          person_class=5, cfg_options=RANDOM_DET, progress=False)
    assert not out.exists()


def test_image_list_names_a_bad_entry_and_lists_each_image_once(tmp_path, caplog):
    from ipr_plugin.apis.person_boxes import load_image_list
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(images=[dict(id=1, file_name='a.jpg'), dict(id='2', file_name='b.jpg')])))
    with pytest.raises(ValueError, match=r'ann.json: images entry 1 \(.*b.jpg.*\) needs an integer "id"'):
        load_image_list(str(ann))
    # no id at all: COCO's index could not take the entry, as the dataset's check (file_problem) says
    ann.write_text(json.dumps(dict(images=[dict(id=1, file_name='a.jpg'), dict(file_name='b.jpg')])))
    with pytest.raises(ValueError, match=r'ann.json: image id None \(b.jpg\) has no id'):
        load_image_list(str(ann))
    ann.write_text(json.dumps(dict(images=[dict(id=1, file_name='a.jpg'), dict(id=2, file_name='b.jpg'),
                                           dict(id=1, file_name='a.jpg')])))
    assert load_image_list(str(ann)) == [(1, 'a.jpg'), (2, 'b.jpg')]
    assert 'lists 1 image id(s) more than once' in caplog.text


def test_a_file_that_is_no_coco_annotation_file_is_named_with_what_it_is(coco_sample, tmp_path, repo_root):
    """A detection file (a list), a non-JSON or empty file and an image given as --ann-file: one line naming the
    file and what it is, not ``'list' object has no attribute 'get'`` or json's ``Expecting value``."""
    from ipr_plugin.apis.person_boxes import load_image_list
    det = str(coco_sample / 'test_coco_det_AP_H_56.json')
    tool = subprocess.run([sys.executable, str(repo_root / 'tools' / 'make_person_boxes.py'), DET_CONFIG, 'none',
                           '--ann-file', det, '--img-dir', str(coco_sample), '--out', str(tmp_path / 'boxes.json'),
                           '--no-progress'], capture_output=True, text=True, timeout=300)
    assert tool.returncode == 1 and 'Traceback' not in tool.stderr
    assert tool.stderr.strip().splitlines()[-1].startswith(
        f'make_person_boxes: annotation file {det}: holds a list, not a COCO object with images')
    (tmp_path / 'garbage.json').write_text('not json')
    (tmp_path / 'empty.json').write_text('')
    for name, why in (('garbage.json', 'Expecting value at line 1 column 1'), ('empty.json', 'the file is empty'),
                      ('000000000785.jpg', 'not UTF-8 text')):
        path = coco_sample / name if name.endswith('.jpg') else tmp_path / name
        with pytest.raises(ValueError, match=rf'^annotation file {path} is not JSON: {why}'):
            load_image_list(str(path))


def test_a_checkpoint_of_another_model_is_refused_not_run_with_random_weights(coco_sample, tmp_path):
    """mmdet's init_detector only warns about keys it cannot place: a pose model's checkpoint given as the
    detector's ran the detector with random weights."""
    import torch
    from mmdet.apis import init_detector
    from mmengine.registry import DefaultScope

    from ipr_plugin.apis.checkpoint_check import init_checked_model
    from ipr_plugin.paths import load_config, plugin_config
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = init_detector(load_config(DET_CONFIG, RANDOM_DET), None, device='cpu')
    own = tmp_path / 'rtmdet.pth'
    torch.save(dict(state_dict=detector.state_dict(), meta=dict(dataset_meta=detector.dataset_meta)), own)
    pose = tmp_path / 'pose.pth'
    torch.save(dict(state_dict=init_checked_model(plugin_config('ipr_res50_8xb64-210e_coco-256x256.py'),
                                                  None).state_dict()), pose)
    args = (str(coco_sample / 'test_coco.json'), str(coco_sample))
    with pytest.raises(ValueError, match=r'detector checkpoint .*pose.pth holds 0 of the \d+ weights of '
                       r".*rtmdet_tiny_8xb32-300e_coco.py's RTMDet \(by name and shape\): not a checkpoint of "):
        make_person_boxes(DET_CONFIG, str(pose), *args, str(tmp_path / 'pose_boxes.json'), score_thr=0.0,
                          cfg_options=RANDOM_DET, max_images=1, progress=False)
    assert not (tmp_path / 'pose_boxes.json').exists()
    stats = make_person_boxes(DET_CONFIG, str(own), *args, str(tmp_path / 'boxes.json'), score_thr=0.0,
                              cfg_options=RANDOM_DET, max_images=1, progress=False)  # its own weights: all found
    assert stats['num_processed'] == 1 and (tmp_path / 'boxes.json').is_file()

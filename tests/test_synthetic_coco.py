"""The synthetic COCO writer: layout, COCO fields, keypoints on the pixels drawn for them, determinism.

Pure numpy/cv2 (no mmpose); the loading through mmpose is in test_dataset_checks.py.
"""
import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest

from ipr_plugin.datasets.render import JOINT_COLORS_BGR, NUM_KEYPOINTS, render_scene
from ipr_plugin.datasets.synthetic_coco import (COCO_KEYPOINT_NAMES, COCO_SKELETON, DET_FILE, DIFFICULTIES,
                                                NotASyntheticSet, write_synthetic_coco)

SIZE = (320, 240)  # small images keep the suite fast; the renderer is size-agnostic
NUM_TRAIN, NUM_VAL = 8, 4


def _write(root: Path, difficulty: str = 'normal', seed: int = 0) -> Dict:
    return write_synthetic_coco(str(root), num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=SIZE, seed=seed,
                                difficulty=difficulty)


@pytest.fixture(scope='module', params=sorted(DIFFICULTIES))
def written(request, tmp_path_factory) -> Dict:
    out = _write(tmp_path_factory.mktemp(request.param), request.param)
    out['difficulty'] = request.param
    return out


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def _keypoints(ann: Dict) -> np.ndarray:
    return np.asarray(ann['keypoints'], dtype=np.int64).reshape(NUM_KEYPOINTS, 3)


def test_layout_and_return_value(written):
    root = Path(written['root'])
    for split, n in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        assert written[f'{split}_ann_file'] == str(root / 'annotations' / f'person_keypoints_{split}2017.json')
        assert written[f'{split}_img_dir'] == str(root / f'{split}2017')
        files = sorted(os.listdir(written[f'{split}_img_dir']))
        assert len(files) == n == written[f'num_{split}_images']
        coco = _load(written[f'{split}_ann_file'])
        assert [im['file_name'] for im in coco['images']] == files
        assert all(im['file_name'] == f'{im["id"]:012d}.jpg' for im in coco['images'])
        assert len(coco['annotations']) == written[f'num_{split}_instances']
    assert written['bbox_file'] == str(root / DET_FILE)
    assert len(_load(written['bbox_file'])) == written['num_detections']
    image = cv2.imread(str(root / 'train2017' / '000000000001.jpg'))
    assert image.shape == (SIZE[1], SIZE[0], 3)


def test_coco_fields(written):
    for split in ('train', 'val'):
        coco = _load(written[f'{split}_ann_file'])
        (cat,) = coco['categories']
        assert (cat['id'], cat['name'], cat['supercategory']) == (1, 'person', 'person')
        assert tuple(cat['keypoints']) == COCO_KEYPOINT_NAMES and len(cat['keypoints']) == 17
        assert [tuple(e) for e in cat['skeleton']] == list(COCO_SKELETON)
        images = {im['id']: im for im in coco['images']}
        assert all((im['width'], im['height']) == SIZE for im in images.values())
        ann_ids = [a['id'] for a in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
        assert {a['image_id'] for a in coco['annotations']} == set(images), 'an image without a person'
        for ann in coco['annotations']:
            kpts = _keypoints(ann)
            v = kpts[:, 2]
            assert set(v) <= {0, 1, 2}
            assert ann['num_keypoints'] == int(np.count_nonzero(v)) > 0
            assert (kpts[v == 0, :2] == 0).all(), 'COCO writes v=0 keypoints as (0, 0, 0)'
            x, y = kpts[v > 0, 0], kpts[v > 0, 1]
            assert ((x >= 0) & (x < SIZE[0]) & (y >= 0) & (y < SIZE[1])).all()
            bx, by, bw, bh = ann['bbox']
            assert bx >= 0 and by >= 0 and bx + bw <= SIZE[0] and by + bh <= SIZE[1] and min(bw, bh) >= 2
            assert 0 < ann['area'] <= bw * bh
            assert (ann['category_id'], ann['iscrowd']) == (1, 0)
            assert ann['segmentation'] and all(len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])


def test_visible_keypoints_lie_on_their_discs(written):
    """Each v=2 keypoint is the centre of a disc of its joint's colour in the written JPEG."""
    coco = _load(written['train_ann_file'])
    files = {im['id']: im['file_name'] for im in coco['images']}
    images: Dict[int, np.ndarray] = {}
    checked = 0
    for ann in coco['annotations']:
        image = images.setdefault(ann['image_id'],
                                  cv2.imread(os.path.join(written['train_img_dir'], files[ann['image_id']])))
        for k, (x, y, v) in enumerate(_keypoints(ann)):
            if v != 2:
                continue
            patch = image[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].reshape(-1, 3).astype(np.float64)
            mean = patch.mean(0)
            assert np.abs(mean - JOINT_COLORS_BGR[k]).max() < 25, (ann['id'], k, mean, JOINT_COLORS_BGR[k])
            nearest = np.abs(JOINT_COLORS_BGR.astype(np.float64) - mean).sum(1).argmin()
            assert nearest == k, (ann['id'], k, nearest)
            checked += 1
    assert checked > 50


def test_flags_follow_the_rendering():
    """Straight from the renderer, which keeps the true positions: v=0 exactly for keypoints outside the image
    or unlabeled (only face points turned away get unlabeled); inside keypoints are v=1 or v=2."""
    width, height = SIZE
    counts = np.zeros(3, np.int64)
    for index in range(20):
        _, people = render_scene(np.random.default_rng([7, index]), SIZE, DIFFICULTIES['hard'][0])
        for person in people:
            x, y = person.keypoints[:, 0], person.keypoints[:, 1]
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            assert (person.visible[~inside] == 0).all()
            unlabeled = inside & (person.visible == 0)
            assert not unlabeled[5:].any(), 'only face points may be unlabeled inside the image'
            counts += np.bincount(person.visible, minlength=3)
    assert (counts > 0).all(), f'every flag should occur in 20 hard scenes: {counts}'


def _digest(root: str) -> Dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob('*')) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path):
    first, second = _write(tmp_path / 'a'), _write(tmp_path / 'b')
    assert _digest(first['root']) == _digest(second['root'])  # JSON and JPEG bytes alike
    other = _write(tmp_path / 'c', seed=1)
    assert Path(other['train_ann_file']).read_bytes() != Path(first['train_ann_file']).read_bytes()


def test_rendering_processes_write_the_same_files(tmp_path):
    """Images rendered by 3 processes (out of order, in chunks) give the serial writer's bytes, ids included."""
    serial = write_synthetic_coco(str(tmp_path / 'serial'), num_train=7, num_val=5, image_size=SIZE,
                                  difficulty='hard', workers=1)
    pooled = write_synthetic_coco(str(tmp_path / 'pooled'), num_train=7, num_val=5, image_size=SIZE,
                                  difficulty='hard', workers=3)
    assert _digest(serial['root']) == _digest(pooled['root'])
    assert {k: v for k, v in serial.items() if 'root' not in k and 'file' not in k and 'dir' not in k} == \
        {k: v for k, v in pooled.items() if 'root' not in k and 'file' not in k and 'dir' not in k}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def test_detections(written):
    coco = _load(written['val_ann_file'])
    dets = _load(written['bbox_file'])
    image_ids = {im['id'] for im in coco['images']}
    for det in dets:
        assert det['image_id'] in image_ids and det['category_id'] == 1
        assert 0 < det['score'] <= 1
        x, y, w, h = det['bbox']
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= SIZE[0] + 1e-6 and y + h <= SIZE[1] + 1e-6
    found = [max([_iou(a['bbox'], d['bbox']) for d in dets if d['image_id'] == a['image_id']], default=0)
             for a in coco['annotations']]
    assert np.mean(np.asarray(found) >= 0.5) >= (0.8 if written['difficulty'] == 'normal' else 0.6)


def test_hard_is_harder():
    """More and smaller people, fewer visible keypoints: measured over 24 scenes of each difficulty."""
    stats = {}
    for name, (params, _) in DIFFICULTIES.items():
        people = [p for i in range(24) for p in render_scene(np.random.default_rng([3, i]), SIZE, params)[1]]
        heights = [np.ptp(p.keypoints[:, 1]) for p in people]
        stats[name] = (len(people) / 24, np.percentile(heights, 25), np.mean([p.visible == 2 for p in people]))
    (n_normal, small_normal, vis_normal), (n_hard, small_hard, vis_hard) = stats['normal'], stats['hard']
    assert n_hard > n_normal and small_hard < small_normal and vis_hard < vis_normal, stats


def test_tool(tmp_path, repo_root):
    env = dict(os.environ, PYTHONPATH=str(repo_root) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    out = tmp_path / 'synthetic'
    result = subprocess.run([sys.executable, str(repo_root / 'tools' / 'make_synthetic_coco.py'), '--out', str(out),
                             '--num-train', '2', '--num-val', '1', '--difficulty', 'hard', '--image-size', '160',
                             '120', '--workers', '2'], env=env, capture_output=True, text=True, check=True)
    assert str(out) in result.stdout and ' s:' in result.stdout
    assert cv2.imread(str(out / 'val2017' / '000001000001.jpg')).shape == (120, 160, 3)


def test_the_tool_says_when_a_split_is_empty(tmp_path, capsys):
    from ipr_plugin.cli.make_synthetic_coco import main
    main(['--out', str(tmp_path), '--num-train', '0', '--num-val', '1', '--image-size', '160', '120'])
    out = capsys.readouterr().out
    assert 'note: no train images (--num-train 0): mmengine cannot train on this set' in out
    assert 'no val images' not in out


BAD_ARGUMENTS = [  # (API argument, value, start of its problem, flag and its words)
    ('num_train', -2, 'must be a number of images >= 0, got -2', ['--num-train', '-2']),
    ('num_val', -1, 'must be a number of images >= 0, got -1', ['--num-val', '-1']),
    ('image_size', (0, 0), r'must be \(width, height\), both at least 36 px, got \(0, 0\)',
     ['--image-size', '0', '0']),
    ('image_size', (320, 35), r'must be \(width, height\), both at least 36 px', ['--image-size', '320', '35']),
    ('people_per_image', (3, 1), r'must be \(min, max\) with 0 <= min <= max and max >= 1, got \(3, 1\)',
     ['--people-per-image', '3', '1']),
    ('people_per_image', (0, 0), 'must be', ['--people-per-image', '0', '0']),
    ('jpeg_quality', 101, r'must be in \[0, 100\], got 101', ['--jpeg-quality', '101']),
    ('workers', 0, 'must be a number of processes >= 1, got 0', ['--workers', '0']),
]


@pytest.mark.parametrize('name,value,problem,words', BAD_ARGUMENTS)
def test_bad_arguments_are_named(tmp_path, repo_root, monkeypatch, capsys, name, value, problem, words):
    with pytest.raises(ValueError, match=f'{name} {problem}'):
        write_synthetic_coco(str(tmp_path / 'api'), **{'num_train': 1, 'num_val': 1, 'image_size': SIZE, name: value})
    tool = str(repo_root / 'tools' / 'make_synthetic_coco.py')
    monkeypatch.setattr(sys, 'argv', [tool, '--out', str(tmp_path / 'cli'), *words])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(tool, run_name='__main__')
    assert exit_info.value.code == 2
    assert re.search(f'error: argument {words[0]}: {problem}', capsys.readouterr().err)
    assert not (tmp_path / 'api').exists() and not (tmp_path / 'cli').exists()  # refused before writing anything


def test_a_set_of_no_image_is_refused(tmp_path, capsys):
    """It was written, and every reader of it then refused it (or trained on nothing)."""
    with pytest.raises(ValueError, match=r'num_val must be at least 1 where there are no train images'):
        write_synthetic_coco(str(tmp_path / 'api'), num_train=0, num_val=0)
    from ipr_plugin.cli import make_synthetic_coco as tool
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--out', str(tmp_path / 'cli'), '--num-train', '0', '--num-val', '0'])
    assert exit_info.value.code == 2
    assert 'argument --num-val: must be at least 1 where there are no train images' in capsys.readouterr().err
    assert not (tmp_path / 'api').exists() and not (tmp_path / 'cli').exists()


def test_an_out_that_is_a_file_is_named_and_left_alone(tmp_path, capsys):
    from ipr_plugin.cli import make_synthetic_coco as tool
    out = tmp_path / 'notes.txt'
    out.write_text('mine')
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--out', str(out), '--num-train', '1', '--num-val', '1'])
    assert exit_info.value.code == 2 and out.read_text() == 'mine'
    assert f'argument --out: {out} is a file, not a folder to write the set into' in capsys.readouterr().err


def test_smallest_images_and_no_one_sometimes_are_fine(tmp_path, monkeypatch):
    """A scene of nobody (or of nobody annotated) is drawn again: one person in each image, as asked."""
    import ipr_plugin.datasets.synthetic_coco as module
    scenes = []

    def counted(rng, image_size, params):
        scenes.append(module._is_annotated)  # any marker: one entry per scene drawn
        return render_scene(rng, image_size, params)

    render_scene = module.render_scene
    monkeypatch.setattr(module, 'render_scene', counted)
    out = write_synthetic_coco(str(tmp_path), num_train=3, num_val=0, image_size=(36, 36), people_per_image=(0, 1),
                               seed=7)
    assert out['num_train_images'] == 3 and out['num_train_instances'] == 3 and out['num_val_images'] == 0
    assert len(scenes) > 3  # seed 7 draws scenes without an annotated person, and none of them is written


def test_a_smaller_set_over_a_larger_one_leaves_only_its_own_images_and_the_users(tmp_path):
    """The larger set's images stayed in the folders, unlisted (a val folder of 40 images for 16 listed)."""
    write_synthetic_coco(str(tmp_path), num_train=5, num_val=4, image_size=(160, 120))
    mine = tmp_path / 'val2017' / 'mine.jpg'
    mine.write_bytes(b'a user file')
    listed = tmp_path / 'val2017' / 'listed.jpg'  # a user's image added to the synthetic set's annotation file
    listed.write_bytes(b'another user file')
    val_ann = tmp_path / 'annotations' / 'person_keypoints_val2017.json'
    coco = json.loads(val_ann.read_text())
    coco['images'].append(dict(coco['images'][0], id=7, file_name=listed.name))
    val_ann.write_text(json.dumps(coco))
    out = write_synthetic_coco(str(tmp_path), num_train=2, num_val=3, image_size=(160, 120))
    assert listed.read_bytes() == b'another user file'
    listed.unlink()
    for split in ('train', 'val'):
        listed = {image['file_name'] for image in json.loads(Path(out[f'{split}_ann_file']).read_text())['images']}
        on_disk = {p.name for p in (tmp_path / f'{split}2017').iterdir()}
        assert on_disk == listed | ({mine.name} if split == 'val' else set())


def _files(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()}


@pytest.mark.parametrize('users', ['annotations/person_keypoints_val2017.json', DET_FILE, 'train2017/000000000002.jpg'])
def test_a_folder_of_someone_elses_coco_files_is_refused_and_left_as_it_was(tmp_path, users):
    """A real COCO folder given as the set's (``--data-root data/coco``): its annotation and detection files were
    removed and its images of the set's names replaced, without a word."""
    (tmp_path / users).parent.mkdir(parents=True)
    (tmp_path / users).write_bytes(b'{"info": {"description": "COCO 2017 Dataset"}, "images": []}')
    before = _files(tmp_path)
    with pytest.raises(NotASyntheticSet, match=f'{tmp_path} holds {tmp_path / users}, which no synthetic set wrote') \
            as refused:
        write_synthetic_coco(str(tmp_path), num_train=2, num_val=1, image_size=(160, 120))
    assert _files(tmp_path) == before
    # the way out for an earlier version's set, never for a folder of real annotations
    assert ("delete that set's folder" in str(refused.value)) == (not users.startswith('annotations'))


def test_a_synthetic_set_and_its_write_cut_short_are_written_over(tmp_path):
    """Only files of no synthetic set stop a write: a set's own are replaced, also once its annotation files are
    deleted (to have it written again), and so are those of a write cut short (an earlier version's, unmarked)."""
    write_synthetic_coco(str(tmp_path), num_train=2, num_val=1, image_size=(160, 120))
    shutil.rmtree(tmp_path / 'annotations')  # its detection file and images are still the set's
    write_synthetic_coco(str(tmp_path), num_train=2, num_val=1, image_size=(160, 120), seed=1)
    assert '(normal, seed 1)' in (tmp_path / 'annotations' / 'person_keypoints_train2017.json').read_text()
    shutil.rmtree(tmp_path / 'annotations')
    (tmp_path / '.synthetic_set').unlink()
    (tmp_path / '.writing').touch()
    write_synthetic_coco(str(tmp_path), num_train=2, num_val=1, image_size=(160, 120), seed=2)
    assert '(normal, seed 2)' in (tmp_path / 'annotations' / 'person_keypoints_train2017.json').read_text()
    val_ann = tmp_path / 'annotations' / 'person_keypoints_val2017.json'
    foreign = json.loads(val_ann.read_text())
    foreign['info']['description'] = 'my own COCO subset'  # a user's annotations over the set's images
    val_ann.write_text(json.dumps(foreign))
    with pytest.raises(NotASyntheticSet, match=f'holds {val_ann}'):
        write_synthetic_coco(str(tmp_path), num_train=2, num_val=1, image_size=(160, 120))

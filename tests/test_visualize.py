"""draw_predictions (the demo's pictures): the sample's skeletons drawn, and only with a checkpoint of the config."""
import json
import shutil
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from mmpose.apis import init_model

from ipr_plugin.apis.visualize import draw_predictions

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'


@pytest.fixture(scope='module')
def state_dict():
    torch.manual_seed(0)
    return init_model(CONFIG, None, device='cpu').state_dict()


def _draw(coco_sample, checkpoint, out_dir, **kwargs):
    args = dict(bbox_file=coco_sample / 'test_coco_det_AP_H_56.json', num_images=2)
    return draw_predictions(CONFIG, str(checkpoint), coco_sample / 'test_coco.json', coco_sample,
                            out_dir=out_dir, **dict(args, **kwargs))


def test_pictures_are_drawn_with_a_checkpoint_of_the_config(coco_sample, state_dict, tmp_path):
    torch.save(dict(state_dict=state_dict), tmp_path / 'ok.pth')
    written = _draw(coco_sample, tmp_path / 'ok.pth', tmp_path / 'out')
    assert len(written) == 2
    for path in written:
        # the source image with skeletons over it: the same size, and drawn pixels far from the source's (JPEG's
        # own rounding moves a pixel by a few levels; a source written back unchanged would have none)
        picture, source = mmcv.imread(path), mmcv.imread(str(coco_sample / Path(path).name))
        assert picture.shape == source.shape
        drawn = (np.abs(picture.astype(int) - source.astype(int)).max(axis=-1) > 80).sum()
        assert drawn > 200, f'{path}: {drawn} pixels drawn'


@pytest.mark.parametrize('damage, error', [
    ('renamed head', r"lacks 17 of the model's 117 keys \(head\..*: not a checkpoint of this config"),
    ('nan', r'holds NaN or Inf in 1 tensor\(s\) \(head\.simplebaseline_head\.final_layer\.bias\)')])
def test_another_configs_or_a_diverged_checkpoint_is_refused_before_drawing(coco_sample, state_dict, tmp_path,
                                                                            damage, error):
    """mmpose's init_model would load the renamed one with a warning and draw a random head's guesses."""
    if damage == 'nan':
        bias = 'head.simplebaseline_head.final_layer.bias'
        weights = dict(state_dict, **{bias: torch.full_like(state_dict[bias], float('nan'))})
    else:
        weights = {k.replace('head.', 'pose_head.', 1): v for k, v in state_dict.items()}
    torch.save(dict(state_dict=weights), tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match=rf'checkpoint .*bad.pth {error}'):
        _draw(coco_sample, tmp_path / 'bad.pth', tmp_path / 'out')
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_pictures_stay_in_the_output_folder_and_never_replace_an_image(coco_sample, state_dict, tmp_path):
    """An absolute or nested file name must not lead the picture out of the output folder (osp.join would drop
    the folder and write over the source image), and pictures of images with one name must not overwrite each
    other."""
    torch.save(dict(state_dict=state_dict), tmp_path / 'ok.pth')
    images = tmp_path / 'images'
    (images / 'a').mkdir(parents=True)
    (images / 'b').mkdir()
    ann = json.loads((coco_sample / 'test_coco.json').read_text())
    first, second = ann['images'][:2]
    shutil.copy(coco_sample / first['file_name'], images / 'a' / 'same.jpg')
    shutil.copy(coco_sample / second['file_name'], images / 'b' / 'same.jpg')
    first['file_name'] = str(images / 'a' / 'same.jpg')  # absolute, as some labelling tools export it
    second['file_name'] = 'b/same.jpg'
    ann_file = tmp_path / 'ann.json'
    ann_file.write_text(json.dumps(ann))
    sources = {p: p.read_bytes() for p in images.rglob('*.jpg')}
    out = tmp_path / 'out'
    written = draw_predictions(CONFIG, str(tmp_path / 'ok.pth'), ann_file, images,
                               coco_sample / 'test_coco_det_AP_H_56.json', out, num_images=2)
    assert written == [str(out / 'same.jpg'), str(out / f'same_{second["id"]}.jpg')]
    assert all(p.read_bytes() == data for p, data in sources.items())  # no image replaced
    # into a folder of the images: the first picture, same.jpg, would replace the second image
    with pytest.raises(ValueError, match=rf'image {first["id"]} would replace the image file .*b/same.jpg'):
        draw_predictions(CONFIG, str(tmp_path / 'ok.pth'), ann_file, images,
                         coco_sample / 'test_coco_det_AP_H_56.json', images / 'b', num_images=2)
    assert all(p.read_bytes() == data for p, data in sources.items())


def _detections(coco_sample, tmp_path, name: str, change) -> Path:
    """The sample's detection file with ``change(entry)`` applied to each entry, written to ``tmp_path/name``."""
    entries = json.loads((coco_sample / 'test_coco_det_AP_H_56.json').read_text())
    path = tmp_path / name
    path.write_text(json.dumps([change(dict(entry)) for entry in entries]))
    return path


def test_only_person_boxes_are_drawn_and_a_bad_entry_is_named(coco_sample, state_dict, tmp_path):
    """As the dataset: boxes of another category are not people, and an entry it could not use is named."""
    torch.save(dict(state_dict=state_dict), tmp_path / 'ok.pth')
    first, second = json.loads((coco_sample / 'test_coco.json').read_text())['images'][:2]
    cars_on_first = _detections(coco_sample, tmp_path, 'cars_on_first.json',
                                lambda d: dict(d, category_id=3) if d['image_id'] == first['id'] else d)
    written = draw_predictions(CONFIG, str(tmp_path / 'ok.pth'), coco_sample / 'test_coco.json', coco_sample,
                               cars_on_first, tmp_path / 'out', num_images=2)
    assert written == [str(tmp_path / 'out' / f'{Path(second["file_name"]).stem}.jpg')]
    # a whole split's detection file with an annotation file of some of its images: the others are not drawn
    coco = json.loads((coco_sample / 'test_coco.json').read_text())
    subset = tmp_path / 'two_images.json'
    subset.write_text(json.dumps(dict(coco, images=[first, second], annotations=[
        a for a in coco['annotations'] if a['image_id'] in (first['id'], second['id'])])))
    assert len(draw_predictions(CONFIG, str(tmp_path / 'ok.pth'), subset, coco_sample,
                                coco_sample / 'test_coco_det_AP_H_56.json', tmp_path / 'subset', num_images=2)) == 2
    cars = _detections(coco_sample, tmp_path, 'cars.json', lambda d: dict(d, category_id=3))
    with pytest.raises(ValueError, match=rf'^draw_predictions: the detection file {cars} has no person boxes \(no '
                       r'entry with category_id 1 among its 118 entries\)$'):
        _draw(coco_sample, tmp_path / 'ok.pth', tmp_path / 'out', bbox_file=cars)
    no_score = _detections(coco_sample, tmp_path, 'no_score.json',
                           lambda d: {k: v for k, v in d.items() if k != 'score'})
    with pytest.raises(ValueError, match=rf'^draw_predictions: the detection file {no_score}: entry 0 \(image_id '
                       rf'{first["id"]}\) has score None, not a number$'):
        _draw(coco_sample, tmp_path / 'ok.pth', tmp_path / 'out', bbox_file=no_score)


def test_nothing_to_draw_is_an_error_not_an_empty_list(coco_sample, tmp_path):
    """Refused before the model is built (no checkpoint needed): an empty list would read as "drawn"."""
    with pytest.raises(ValueError, match=r'^draw_predictions: num_images must be a positive number of images, got 0'):
        _draw(coco_sample, tmp_path / 'none.pth', tmp_path / 'out', num_images=0)
    with pytest.raises(ValueError, match=r'^draw_predictions: nothing drawn: no person box of .*test_coco_det_AP_H_56'
                       r'.json scores >= 2 on the first 2 image\(s\) of .*test_coco.json; the highest score there is '
                       r'1.000: lower bbox_thr$'):
        _draw(coco_sample, tmp_path / 'none.pth', tmp_path / 'out', bbox_thr=2)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('backend', ['opencv', 'matplotlib'])
def test_keypoints_are_drawn_without_converting_a_1d_radius_to_an_int(backend):
    """mmpose passes each keypoint's radius as np.array([r]) and its OpenCV backend calls int() on it: deprecated
    since numpy 1.25 (the warning, made an error here, is what numpy 2.5 raises), so drawing failed there."""
    import warnings
    from mmpose.registry import VISUALIZERS
    from mmpose.visualization import PoseLocalVisualizer
    from ipr_plugin.visualization import IPRPoseLocalVisualizer
    ours = VISUALIZERS.build(dict(type='IPRPoseLocalVisualizer', name=f'test_radius_{backend}', backend=backend))
    assert isinstance(ours, IPRPoseLocalVisualizer)
    theirs = PoseLocalVisualizer(name=f'test_radius_mmpose_{backend}', backend=backend)
    for visualizer in (ours, theirs):
        visualizer.set_image(np.zeros((20, 20, 3), np.uint8))
    draw = dict(radius=np.array([3]), face_colors=(255, 0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter('error', DeprecationWarning)
        ours.draw_circles(np.array([5.0, 5.0]), **draw)
        if backend == 'opencv' and np.lib.NumpyVersion(np.__version__) >= '1.25.0':
            with pytest.raises((DeprecationWarning, TypeError)):
                theirs.draw_circles(np.array([5.0, 5.0]), **draw)
    assert ours.get_image()[5, 5].any() and not ours.get_image()[15, 15].any()  # a filled circle, where it belongs

"""Annotation files with malformed records: mmpose's ``CocoDataset`` fails deep inside with a bare ``KeyError`` or
unpacking error; ``IPRCocoDataset`` names the file and the record. The checks in ``coco_checks`` on their own,
then through the dataset on edited copies of the real COCO sample."""
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from mmpose.datasets import CocoDataset

from ipr_plugin.datasets.body.coco_checks import (annotation_problem, detection_problem, duplicate_id_problem,
                                                  file_problem, image_problem, image_size_table)
from ipr_plugin.datasets.body.coco_dataset import IPRCocoDataset

IMAGE = dict(id=785, file_name='000000000785.jpg', width=640, height=425)
ANN = dict(id=1, image_id=785, bbox=[1.0, 2.0, 30.0, 40.0], keypoints=[0] * 51, area=900.0)


@pytest.mark.parametrize('edit, expected', [
    ({}, None),
    (dict(width=None), 'image id 785 (000000000785.jpg) has width None, not a positive number of pixels'),
    (dict(height=0), 'has height 0, not a positive number'),
    (dict(height='425'), "has height '425'"),
    (dict(file_name=None), None),  # present: mmpose joins it with the folder, the image then fails to load
])
def test_image_problem(edit, expected):
    problem = image_problem(dict(IMAGE, **edit))
    assert problem == expected if expected is None else expected in problem


def test_image_problem_names_every_missing_key():
    assert image_problem(dict(id=7, width=3)) == 'image id 7 has no file_name and no height'
    assert image_problem([1, 2]) == 'image entry [1, 2] is not an object'


@pytest.mark.parametrize('edit, expected', [
    ({}, None),
    (dict(bbox=[1, 2, 3]), 'bbox [1, 2, 3], not [x, y, w, h] (4 numbers)'),
    (dict(bbox=None), 'bbox None, not'),
    (dict(bbox=[1, 2, '3', 4]), "bbox [1, 2, '3', 4], not"),
    (dict(bbox=[1, 2, float('nan'), 4]), None),  # a number: the dataset's finiteness check names it
    (dict(keypoints=None), 'keypoints None, not a list of (x, y, visibility) triplets'),
    (dict(area='big'), "area 'big', not a number"),
])
def test_annotation_problem(edit, expected):
    problem = annotation_problem(dict(ANN, **edit))
    assert problem == expected if expected is None else expected in problem


def test_file_problem():
    assert file_problem(dict(images=[IMAGE], annotations=[ANN])) is None
    assert file_problem([]) == 'holds a list, not a COCO object with images, annotations and categories'
    assert file_problem(dict(annotations=[ANN])).startswith('has no "images" list')
    assert file_problem(dict(images=[IMAGE, dict(IMAGE, id=9, width=-1)])).startswith('image id 9 ')
    no_id = {k: v for k, v in ANN.items() if k != 'id'}
    assert file_problem(dict(images=[IMAGE], annotations=[ANN, no_id])) == \
        'annotation 1 (counting from 0; image_id 785) has no id'
    # only the images whose fields will be read, and every entry COCO's index cannot take
    sizeless = dict(id=9, file_name='9.jpg')
    assert file_problem(dict(images=[IMAGE, sizeless]), image_ids={785}) is None
    assert file_problem(dict(images=[IMAGE, sizeless]), image_ids={9}) == \
        'image id 9 (9.jpg) has no width and no height'
    assert file_problem(dict(images=[IMAGE, 'x']), image_ids=set()) == "image entry 'x' is not an object"
    assert file_problem(dict(images=[IMAGE, dict(file_name='a.jpg')]), image_ids=set()).endswith('has no id and no '
                                                                                                  'width and no height')


def test_duplicate_id_problem():
    assert duplicate_id_problem(dict(images=[IMAGE, dict(IMAGE, id=9)], annotations=[ANN, dict(ANN, id=2)])) is None
    assert duplicate_id_problem(dict(images=[IMAGE], annotations=[ANN, dict(ANN, id=2, image_id=9), ANN])) == (
        "uses annotation id 1 twice (on images 785 and 785): annotation ids must be unique, as COCO's index keeps "
        'one annotation per id (annotations 0 and 2, counting from 0)')
    assert duplicate_id_problem(dict(images=[IMAGE, dict(IMAGE, file_name='b.jpg')], annotations=[])).startswith(
        'uses image id 785 twice: image ids must be unique')
    # an image entry listed twice, identically: COCO's index keeps it once (an annotation twice would be a person twice)
    assert duplicate_id_problem(dict(images=[IMAGE, dict(IMAGE)], annotations=[ANN])) is None
    assert duplicate_id_problem(dict(images=[IMAGE], annotations=[ANN, dict(ANN)])).startswith(
        'uses annotation id 1 twice')
    # records without ids are file_problem's to name
    assert duplicate_id_problem(dict(images=['x', {}], annotations=[{}, {}, 3])) is None


def test_detection_problem():
    person = dict(image_id=785, category_id=1, bbox=[1, 2, 3, 4], score=0.9)
    assert detection_problem([person, dict(person, category_id=2, bbox=None)], {785}, 'a.json') is None
    assert detection_problem([dict(person, category_id=3)], {785}, 'a.json') == (
        None, 'has no person boxes (no entry with category_id 1 among its 1 entries)')
    assert detection_problem([person, dict(person, image_id=1)], {785}, 'a.json') == (
        1, 'is on no image of the annotation file a.json')
    assert detection_problem([person, dict(person, score=float('inf'))], {785}, 'a.json')[0] == 1


def test_image_size_table_sorts_by_id_and_leaves_unknown_sizes_uncompared():
    ids, sizes = image_size_table([dict(id=9, height=4, width=5), dict(id=2, height=float('nan'), width=3),
                                   dict(id=5, height=1, width=2)])
    assert ids.tolist() == [2, 5, 9] and sizes.tolist() == [[-1, -1], [1, 2], [4, 5]]


def _edited(coco_sample: Path, tmp_path: Path, edit) -> str:
    data = json.loads((coco_sample / 'test_coco.json').read_text())
    edit(data)
    path = tmp_path / 'edited.json'
    path.write_text(json.dumps(data))
    return str(path)


def _first_person(data):
    return next(ann for ann in data['annotations'] if ann['num_keypoints'] > 0)


EDITS = {
    'a box of 3 numbers': (lambda d: _first_person(d).update(bbox=[1, 2, 3]), 'bbox [1, 2, 3], not [x, y, w, h]'),
    'null keypoints': (lambda d: _first_person(d).update(keypoints=None), 'keypoints None, not a list'),
    'an image without width': (lambda d: d['images'][1].pop('width'), 'image id 40083 (000000040083.jpg) has no '
                                                                       'width'),
    'an image without file_name': (lambda d: d['images'][2].pop('file_name'), 'image id 196141 has no file_name'),
    'an annotation without id': (lambda d: d['annotations'][3].pop('id'), 'annotation 3 (counting from 0; '
                                                                          'image_id '),
    'a list': (lambda d: (d.clear(), d.update(wrapped=[])), 'has no "images" list'),
    'an annotation without category_id': (lambda d: d['annotations'][2].pop('category_id'),
                                          'annotation 2 (counting from 0; id '),
}


@pytest.mark.parametrize('case', sorted(EDITS))
@pytest.mark.parametrize('test_mode', [False, True])
def test_a_malformed_record_is_named_where_mmpose_crashes(coco_sample, tmp_path, case, test_mode):
    """Also on the test split, which reads no instance: the evaluation reads them all, after the inference."""
    edit, needle = EDITS[case]
    ann_file = _edited(coco_sample, tmp_path, edit)
    kwargs = dict(ann_file=ann_file, data_prefix=dict(img=str(coco_sample)), pipeline=[], test_mode=test_mode,
                  bbox_file=str(coco_sample / 'test_coco_det_AP_H_56.json') if test_mode else None)
    if not test_mode:
        with pytest.raises(Exception) as theirs:  # whatever mmpose raises: the point is what it says
            CocoDataset(**kwargs)
        assert ann_file not in str(theirs.value)  # what mmpose says does not name the file
    with pytest.raises(ValueError) as ours:
        IPRCocoDataset(**kwargs)
    assert 'IPRCocoDataset: ' in str(ours.value) and ann_file in str(ours.value) and needle in str(ours.value)


def test_annotation_ids_restarting_in_every_image_are_refused_where_mmpose_mixes_up_the_images(coco_sample, tmp_path):
    """A converter that numbers each image's annotations from 1: COCO's index keeps one annotation per id, so
    mmpose gives every image the people of the last image with that id, without a word."""
    def per_image_ids(data):
        counts = {}
        for ann in data['annotations']:
            counts[ann['image_id']] = ann['id'] = counts.get(ann['image_id'], 0) + 1

    ann_file = _edited(coco_sample, tmp_path, per_image_ids)
    kwargs = dict(ann_file=ann_file, data_prefix=dict(img=str(coco_sample)), pipeline=[])
    theirs = CocoDataset(**kwargs)
    people_on = {a['image_id'] for a in json.loads(Path(ann_file).read_text())['annotations'] if a['num_keypoints']}
    samples_on = {theirs.get_data_info(i)['img_id'] for i in range(len(theirs))}
    assert len(people_on) == 4 and len(samples_on) == 1  # every sample is a person of the last image
    with pytest.raises(ValueError, match=rf'IPRCocoDataset: the annotation file {ann_file}: uses annotation id 1 twice '
                       r'\(on images \d+ and \d+\): annotation ids must be unique'):
        IPRCocoDataset(**kwargs)


def test_an_image_without_a_size_and_without_person_boxes_is_accepted_as_mmpose_accepts_it(coco_sample, tmp_path):
    """With a detection file mmpose reads file_name, width and height only of the images with person boxes."""
    def unused_image(data):
        data['images'].append(dict(id=999, file_name='not_there.jpg'))

    kwargs = dict(ann_file=_edited(coco_sample, tmp_path, unused_image), data_prefix=dict(img=str(coco_sample)),
                  pipeline=[], bbox_file=str(coco_sample / 'test_coco_det_AP_H_56.json'), test_mode=True)
    assert len(IPRCocoDataset(**kwargs)) == len(CocoDataset(**kwargs)) > 0
    (tmp_path / 'det.json').write_text(json.dumps([dict(image_id=999, category_id=1, bbox=[1, 2, 30, 40],
                                                        score=0.9)]))
    with pytest.raises(ValueError, match='image id 999 .not_there.jpg. has no width and no height'):
        IPRCocoDataset(**dict(kwargs, bbox_file=str(tmp_path / 'det.json')))


def test_a_named_record_is_not_replaced_by_another_record_of_the_file(coco_sample, tmp_path):
    """An instance with the wrong keypoint count is the error, not an unused image without a size elsewhere in
    the file (which mmpose accepts)."""
    def two_faults(data):
        _first_person(data)['keypoints'] = [0] * 45
        data['images'].append(dict(id=999, file_name='not_there.jpg'))

    kwargs = dict(ann_file=_edited(coco_sample, tmp_path, two_faults), data_prefix=dict(img=str(coco_sample)),
                  pipeline=[])
    with pytest.raises(ValueError, match=r'annotation id \d+ \(image \d+\) has 15 keypoints but the dataset '):
        IPRCocoDataset(**kwargs)


@pytest.mark.parametrize('test_mode', [False, True])
def test_an_instance_with_an_empty_keypoint_list_is_dropped_as_mmpose_drops_it(coco_sample, tmp_path, test_mode):
    """``"keypoints": []`` with num_keypoints 0 (or none given) is a person annotated without keypoints, which
    mmpose's top-down filter drops, as it drops one with 3 x K zeros; with num_keypoints > 0 it contradicts
    itself and stays refused."""
    def empty(num_keypoints):
        def edit(data):
            extra = dict(_first_person(data), id=10 ** 9, keypoints=[], num_keypoints=num_keypoints)
            if num_keypoints is None:
                extra.pop('num_keypoints')
            data['annotations'].append(extra)
        return edit

    kwargs = dict(data_prefix=dict(img=str(coco_sample)), pipeline=[], test_mode=test_mode)
    expected = len(CocoDataset(ann_file=str(coco_sample / 'test_coco.json'), **kwargs))
    for num_keypoints in (0, None):
        ann_file = _edited(coco_sample, tmp_path, empty(num_keypoints))
        assert len(IPRCocoDataset(ann_file=ann_file, **kwargs)) == len(CocoDataset(ann_file=ann_file, **kwargs)) \
            == expected
        if test_mode:  # the detection path checks every annotation of the file before mmpose reads it
            det = dict(ann_file=ann_file, bbox_file=str(coco_sample / 'test_coco_det_AP_H_56.json'), **kwargs)
            assert len(IPRCocoDataset(**det)) == len(CocoDataset(**det)) > 0
    with pytest.raises(ValueError, match=r'annotation id 1000000000 \(image \d+\) has 0 keypoints but the '):
        IPRCocoDataset(ann_file=_edited(coco_sample, tmp_path, empty(3)), **kwargs)


def test_a_file_that_is_not_json_is_named(coco_sample, tmp_path):
    path = tmp_path / 'cut.json'
    path.write_text((coco_sample / 'test_coco.json').read_text()[:500])
    for bbox_file in (None, str(coco_sample / 'test_coco_det_AP_H_56.json')):
        with pytest.raises(ValueError, match=f'the annotation file {path} is not valid JSON: '):
            IPRCocoDataset(ann_file=str(path), data_prefix=dict(img=str(coco_sample)), pipeline=[],
                           bbox_file=bbox_file, test_mode=bbox_file is not None)


def test_annotations_on_no_listed_image_are_reported_not_dropped_silently(coco_sample, tmp_path, monkeypatch):
    import ipr_plugin.datasets.body.coco_dataset as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda *args, **kwargs: logged.append((args, kwargs)))
    ann_file = _edited(coco_sample, tmp_path, lambda d: _first_person(d).update(image_id=999))
    dataset = IPRCocoDataset(ann_file=ann_file, data_prefix=dict(img=str(coco_sample)), pipeline=[])
    reference = CocoDataset(ann_file=str(coco_sample / 'test_coco.json'), data_prefix=dict(img=str(coco_sample)),
                            pipeline=[])
    assert len(dataset) == len(reference) - 1
    [((message, ), kwargs)] = logged
    assert kwargs == dict(logger='current', level=logging.WARNING)
    person = _first_person(json.loads((coco_sample / 'test_coco.json').read_text()))
    assert f'1 annotations in {ann_file} are on no image of its "images" list and are not used (ids ' \
           f'{person["id"]})' in message
    assert np.all(dataset._image_sizes > 0)

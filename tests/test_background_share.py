"""The background-share breakdown (tools/background_share.py): its grouping, and a real model on the COCO sample."""
import copy
import json

import numpy as np
import pytest
import torch

from ipr_plugin.apis.background_share import keypoint_shares, main, share_markdown, share_table
from ipr_plugin.paths import REPO_ROOT

CONFIG = REPO_ROOT / 'configs' / 'synthetic' / 'ipr_res18-w16_1xb32-60e_synthetic-128x128.py'


def test_groups_split_by_visibility_and_coco_area_range():
    shares = np.array([0.1, 0.95, 0.5, 0.99, 0.2, 0.3])
    visibility = np.array([2, 2, 1, 1, 2, 1])
    areas = np.array([100.0, 500.0, 2000.0, 20000.0, 9216.0, 1024.0])  # small small medium large large medium
    rows = {(r['visibility'], r['size']): r for r in share_table(shares, visibility, areas, cap=0.9)}
    assert len(rows) == 12
    assert rows['visible (v=2)', 'small'] == dict(visibility='visible (v=2)', size='small', count=2,
                                                  mean_r=pytest.approx(0.525), median_r=pytest.approx(0.525),
                                                  capped=0.5)
    assert rows['visible (v=2)', 'medium']['count'] == 0 and rows['visible (v=2)', 'medium']['mean_r'] is None
    assert rows['visible (v=2)', 'large']['count'] == 1  # 96^2 = 9216 is large, as in COCO's evaluation
    assert rows['occluded (v=1)', 'medium']['count'] == 2  # 32^2 = 1024 is medium
    assert rows['occluded (v=1)', 'all']['capped'] == pytest.approx(1 / 3)
    assert rows['all labelled', 'all'] == dict(visibility='all labelled', size='all', count=6,
                                               mean_r=pytest.approx(shares.mean()), median_r=pytest.approx(0.4),
                                               capped=pytest.approx(2 / 6))
    text = share_markdown(list(rows.values()), 0.9)
    assert '| visible (v=2) | medium | 0 |  |  |  |' in text and '| all labelled | all | 6 |' in text
    with pytest.raises(ValueError, match='one length'):
        share_table(shares, visibility[:3], areas, cap=0.9)


@pytest.fixture(scope='module')
def flat_checkpoint(tmp_path_factory):
    """Weights of the synthetic config's model whose last layer outputs -0.5 everywhere: flat maps, a level-0
    share of r = HW / (HW exp(-0.5 beta)) = exp(0.5 beta) and a share about the median logit of exactly 1."""
    from mmpose.apis import init_model
    model = init_model(str(CONFIG), None, device='cpu')
    final = model.head.final_layer or model.head.simplebaseline_head.final_layer
    torch.nn.init.zeros_(final.weight)
    torch.nn.init.constant_(final.bias, -0.5)
    path = tmp_path_factory.mktemp('flat') / 'flat.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def test_flat_maps_put_every_labelled_keypoint_of_the_sample_above_the_cap_at_either_level(coco_sample, flat_checkpoint,
                                                                           tmp_path, capsys):
    ann_file = coco_sample / 'test_coco.json'
    anns = [a for a in json.loads(ann_file.read_text())['annotations'] if not a.get('iscrowd', 0)]
    flags = np.concatenate([np.asarray(a['keypoints'][2::3]) for a in anns])
    found = keypoint_shares(str(CONFIG), str(flat_checkpoint), str(ann_file), str(coco_sample))
    assert found['shares'].size == (flags > 0).sum() > 0  # every labelled keypoint, no other
    assert sorted(np.unique(found['visibility'])) == sorted(np.unique(flags[flags > 0]))
    assert found['background'] == 'zero'  # the head's own
    np.testing.assert_allclose(found['shares'], np.exp(0.5 * found['beta']), rtol=1e-5)
    assert found['num_people'] == sum(any(v > 0 for v in a['keypoints'][2::3]) for a in anns)

    out = tmp_path / 'table.json'
    assert main([str(CONFIG), str(flat_checkpoint), '--ann-file', str(ann_file), '--img-dir', str(coco_sample),
                 '--out', str(out), '--background', 'median', '--no-progress']) == 0
    printed = capsys.readouterr()
    assert 'background share' not in printed.err  # no bar
    report = json.loads(out.read_text())
    assert report['background'] == 'median'
    total = next(r for r in report['rows'] if r['visibility'] == 'all labelled' and r['size'] == 'all')
    assert total['count'] == (flags > 0).sum() and total['capped'] == 1.0
    assert total['mean_r'] == pytest.approx(1.0, rel=1e-5)
    assert '| all labelled | all |' in printed.out


def test_bad_input_names_the_culprit(coco_sample, flat_checkpoint, tmp_path):
    coco = json.loads((coco_sample / 'test_coco.json').read_text())
    coco['annotations'][0]['keypoints'] = coco['annotations'][0]['keypoints'][:-3]  # 16 keypoints
    bad_ann = tmp_path / 'bad.json'
    bad_ann.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=rf'annotation {coco["annotations"][0]["id"]} has 16 keypoints'):
        keypoint_shares(str(CONFIG), str(flat_checkpoint), str(bad_ann), str(coco_sample))
    with pytest.raises(FileNotFoundError, match='image .*000000000785.jpg'):
        keypoint_shares(str(CONFIG), str(flat_checkpoint), str(coco_sample / 'test_coco.json'), str(tmp_path))
    corrupt = tmp_path / 'imgs'
    corrupt.mkdir()
    for image in coco['images']:
        (corrupt / image['file_name']).write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match=r'image \S+imgs/0000000\d+\.jpg cannot be read as an image'):
        keypoint_shares(str(CONFIG), str(flat_checkpoint), str(coco_sample / 'test_coco.json'), str(corrupt))
    with pytest.raises(FileNotFoundError, match='no such file'):
        keypoint_shares(str(CONFIG), str(tmp_path / 'none.pth'), str(coco_sample / 'test_coco.json'),
                        str(coco_sample))
    # a URL is no missing file: loading it is tried, as mmpose's init_model tries it (nothing listens there)
    with pytest.raises(OSError) as error:  # urllib's URLError
        keypoint_shares(str(CONFIG), 'http://127.0.0.1:9/weights.pth', str(coco_sample / 'test_coco.json'),
                        str(coco_sample))
    assert not isinstance(error.value, FileNotFoundError) and 'refused' in str(error.value)


def test_checkpoint_must_be_one_of_the_config(coco_sample, flat_checkpoint, tmp_path):
    ann, img_dir = str(coco_sample / 'test_coco.json'), str(coco_sample)
    text = tmp_path / 'notes.pth'
    text.write_text('hello\n')
    with pytest.raises(ValueError, match=r"notes.pth is not a PyTorch checkpoint \(it starts with b'hell'"):
        keypoint_shares(str(CONFIG), str(text), ann, img_dir)
    state_dict = torch.load(flat_checkpoint)['state_dict']
    headless = tmp_path / 'headless.pth'
    torch.save(dict(state_dict={k: v for k, v in state_dict.items() if not k.startswith('head.')}), headless)
    with pytest.raises(ValueError, match=r"headless.pth lacks \d+ of the model's \d+ keys \(head\..*: not a "):
        keypoint_shares(str(CONFIG), str(headless), ann, img_dir)
    prefixed = tmp_path / 'prefixed.pth'
    torch.save(dict(state_dict={f'pose.{k}': v for k, v in state_dict.items()}), prefixed)
    with pytest.raises(SystemExit, match=r"^background_share: checkpoint .*prefixed.pth lacks (\d+) of the model's \1 "
                       r"keys \(backbone\."):  # the tool: that one line, no traceback
        main([str(CONFIG), str(prefixed), '--ann-file', ann, '--img-dir', img_dir])
    diverged = tmp_path / 'diverged.pth'  # named as the culprit, not the first image its NaN logits meet
    nan_conv = state_dict['backbone.conv1.weight'] * torch.nan
    torch.save(dict(state_dict=dict(state_dict, **{'backbone.conv1.weight': nan_conv})), diverged)
    with pytest.raises(ValueError, match=r'diverged.pth holds NaN or Inf in 1 tensor\(s\) \(backbone.conv1.weight\)'):
        keypoint_shares(str(CONFIG), str(diverged), ann, img_dir)


def test_people_with_unusable_boxes_are_skipped_and_counted(coco_sample, flat_checkpoint, tmp_path, capsys):
    coco = json.loads((coco_sample / 'test_coco.json').read_text())
    people = [a for a in coco['annotations'] if not a.get('iscrowd', 0) and any(a['keypoints'][2::3])]
    assert len(people) >= 3
    people[0]['bbox'][2] = float('nan')  # written as NaN, which json reads back
    people[1]['bbox'][3] = 0.0
    bad_ids = [people[0]['id'], people[1]['id']]
    coco['annotations'].append(dict(people[2], id=10 ** 9, keypoints=[], num_keypoints=0))  # no keypoints: not used
    ann_file = tmp_path / 'ann.json'
    ann_file.write_text(json.dumps(coco))
    found = keypoint_shares(str(CONFIG), str(flat_checkpoint), str(ann_file), str(coco_sample))
    assert found['skipped_ids'] == bad_ids
    assert found['num_people'] == len(people) - 2
    assert found['shares'].size == sum(int(np.count_nonzero(a['keypoints'][2::3])) for a in people[2:])
    assert np.isfinite(found['shares']).all()

    out = tmp_path / 'table.json'
    assert main([str(CONFIG), str(flat_checkpoint), '--ann-file', str(ann_file), '--img-dir', str(coco_sample),
                 '--out', str(out)]) == 0
    assert (f'2 labelled people skipped for a non-finite or non-positive box or area (annotation ids '
            f'{bad_ids[0]}, {bad_ids[1]})') in capsys.readouterr().out
    assert json.loads(out.read_text())['skipped_ids'] == bad_ids

    people[0]['bbox'] = [1, 2, 3]
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=rf'annotation {bad_ids[0]} has bbox \[1, 2, 3\], not \[x, y, w, h\]'):
        keypoint_shares(str(CONFIG), str(flat_checkpoint), str(ann_file), str(coco_sample))


def test_a_wrong_annotation_file_is_named_with_its_first_bad_record(coco_sample, flat_checkpoint, tmp_path):
    """A detection file (a list), a non-JSON file, an annotation without image_id and an image without file_name:
    the file and the record named, not ``'list' object has no attribute 'get'``, json's ``Expecting value`` or a
    bare ``KeyError``; the tool ends with that one line."""
    args, det = [str(CONFIG), str(flat_checkpoint)], str(coco_sample / 'test_coco_det_AP_H_56.json')
    with pytest.raises(SystemExit, match=rf'^background_share: annotation file {det}: holds a list, not a COCO '):
        main([*args, '--ann-file', det, '--img-dir', str(coco_sample)])
    (tmp_path / 'garbage.json').write_text('not json')
    with pytest.raises(ValueError, match=rf'^annotation file {tmp_path}/garbage.json is not JSON: Expecting value'):
        keypoint_shares(*args, str(tmp_path / 'garbage.json'), str(coco_sample))
    coco = json.loads((coco_sample / 'test_coco.json').read_text())
    first, image = coco['annotations'][0], coco['images'][1]
    for section, index, key, culprit in (
            ('annotations', 0, 'image_id', rf'annotation 0 \(counting from 0; id {first["id"]}\) has no image_id'),
            ('images', 1, 'file_name', rf'image id {image["id"]} has no file_name')):
        broken = copy.deepcopy(coco)
        del broken[section][index][key]
        path = tmp_path / f'no_{key}.json'
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=rf'^annotation file {path}: {culprit}$'):
            keypoint_shares(*args, str(path), str(coco_sample))

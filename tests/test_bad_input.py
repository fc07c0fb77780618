"""Bad input through the user's path: one clear error naming the culprit file."""
import shutil

import pytest
from mmpose.registry import DATASETS
from mmpose.utils import register_all_modules

import ipr_plugin  # noqa: F401
from utils import REPO_ROOT, run_mim

CONFIG = REPO_ROOT / 'configs' / 'sample' / 'ipr_res18_coco-sample-64x64.py'


def test_mim_train_with_a_missing_annotation_file_names_it(coco_sample, tmp_path):
    missing = tmp_path / 'nowhere' / 'person_keypoints_train2017.json'
    result = run_mim(['train', 'mmpose', CONFIG, '--work-dir', tmp_path / 'work', '--cfg-options',
                      f'train_dataloader.dataset.data_root={coco_sample}/',
                      f'train_dataloader.dataset.ann_file={missing}'], check=False, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if line.startswith('FileNotFoundError')]
    assert errors and str(missing) in errors[-1] and 'ann_file' in errors[-1]


def test_a_corrupt_image_is_named(coco_sample, tmp_path):
    root = tmp_path / 'sample'
    shutil.copytree(coco_sample, root)
    (root / '000000000785.jpg').write_bytes(b'not a jpeg at all')
    register_all_modules()
    dataset = DATASETS.build(dict(type='IPRCocoDataset', data_root=str(root), ann_file='test_coco.json',
                                  data_prefix=dict(img=''), data_mode='topdown',
                                  pipeline=[dict(type='LoadImage'), dict(type='GetBBoxCenterScale')]))
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'].endswith('785.jpg'))
    with pytest.raises(Exception, match='000000000785.jpg'):
        dataset[index]
    assert dataset[(index + 5) % len(dataset)]['img'] is not None  # the other images still load

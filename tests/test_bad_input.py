"""Bad input through the user's path: one clear error naming the culprit file."""

import pytest
from mmpose.registry import DATASETS
from mmpose.utils import register_all_modules

import ipr_plugin  # noqa: F401
from utils import REPO_ROOT, run_mim, writable_copy

CONFIG = REPO_ROOT / 'configs' / 'sample' / 'ipr_res18_coco-sample-64x64.py'


def test_mim_train_with_a_missing_annotation_file_names_it(coco_sample, tmp_path):
    missing = tmp_path / 'nowhere' / 'person_keypoints_train2017.json'
    result = run_mim(['train', 'mmpose', CONFIG, '--work-dir', tmp_path / 'work', '--cfg-options',
                      f'train_dataloader.dataset.data_root={coco_sample}/',
                      f'train_dataloader.dataset.ann_file={missing}'], check=False, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if line.startswith('FileNotFoundError')]
    assert errors and str(missing) in errors[-1] and 'ann_file' in errors[-1]


def _sample_with(root, image: bytes, load: str):
    """The COCO sample in ``root`` with 000000000785.jpg replaced by ``image``; the dataset, and that image's index."""
    (root / '000000000785.jpg').write_bytes(image)
    register_all_modules()
    dataset = DATASETS.build(dict(type='IPRCocoDataset', data_root=str(root), ann_file='test_coco.json',
                                  data_prefix=dict(img=''), data_mode='topdown',
                                  pipeline=[dict(type=load), dict(type='GetBBoxCenterScale')]))
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_path'].endswith('785.jpg'))
    return dataset, index


@pytest.mark.parametrize('load', ['LoadImage', 'IPRLoadImage'])
@pytest.mark.parametrize('damage', ['not an image', 'cut in half'])
def test_a_corrupt_image_is_named(coco_sample, tmp_path, load, damage):
    """IPRLoadImage's own decoder fails on these too: it must fall back to mmcv's reading, which refuses them
    naming the file, rather than fail in its own words or pass a part of an image on."""
    root = tmp_path / 'sample'
    writable_copy(coco_sample, root)
    data = (coco_sample / '000000000785.jpg').read_bytes()
    dataset, index = _sample_with(root, b'not a jpeg at all' if damage == 'not an image' else data[:len(data) // 2],
                                  load)
    with pytest.raises(AssertionError, match=r'failed to load image: \S*/000000000785\.jpg` occurs when loading'):
        dataset[index]
    assert dataset[(index + 5) % len(dataset)]['img'] is not None  # the other images still load

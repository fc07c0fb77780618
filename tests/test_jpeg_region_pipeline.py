"""Where IPRLoadImage(decode_region=True) may defer its decoding to IPRTopdownAffine: pipelines that would read the
image in between are refused, by the dataset and by the loader at its first sample; the loader defers only in the
top level of its dataset's pipeline, and decodes whole images elsewhere (saying so in a run)."""
import copy
import logging

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset, Compose
from mmpose.registry import DATASETS, TRANSFORMS
from mmpose.utils import register_all_modules

import ipr_plugin  # noqa: F401

from test_jpeg_region import needs_decoder


def test_reuse_last_and_decode_region_cannot_be_combined():
    register_all_modules()
    with pytest.raises(ValueError, match='reuse_last.*decode_region'):
        TRANSFORMS.build(dict(type='IPRLoadImage', reuse_last=True, decode_region=True))


@pytest.mark.parametrize('swap, message', [
    (('IPRRandomFlip', dict(type='RandomFlip', direction='horizontal')), 'RandomFlip comes between'),
    (('IPRTopdownAffine', dict(type='TopdownAffine', input_size=(256, 256))), 'none follows it'),
])
def test_a_pipeline_that_would_read_a_deferred_image_is_refused(repo_root, coco_sample, swap, message):
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(str(repo_root / 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'))
    pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    pipeline = [swap[1] if step['type'] == swap[0] else step for step in pipeline]
    with pytest.raises(ValueError, match=message):
        DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(coco_sample), ann_file='test_coco.json',
                            data_prefix=dict(img=''), pipeline=pipeline))


def _bad_pipeline(repo_root):
    """The fast config's train pipeline with a transform that reads the image before IPRTopdownAffine."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(repo_root / 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'))
    pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    pipeline.insert(2, dict(type='PhotometricDistortion'))
    return cfg, pipeline


def test_any_dataset_that_hands_out_samples_gets_its_pipeline_checked(repo_root, coco_sample):
    """mmpose's own CocoDataset (no load-time check), and a pipeline swapped in after the dataset was built (as
    mmdet's PipelineSwitchHook does): the loader refuses it at the first sample, naming the transform."""
    register_all_modules()
    cfg, bad = _bad_pipeline(repo_root)
    data = dict(data_root=str(coco_sample), ann_file='test_coco.json', data_prefix=dict(img=''))
    dataset = DATASETS.build(dict(type='CocoDataset', data_mode='topdown', pipeline=bad, **data))
    with pytest.raises(ValueError, match='CocoDataset: PhotometricDistortion comes between'):
        dataset[0]
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, **data))
    assert dataset[0]['inputs'].shape[-2:] == (256, 256)
    dataset.pipeline = Compose(bad)
    with pytest.raises(ValueError, match='IPRCocoDataset: PhotometricDistortion comes between'):
        dataset[0]


def test_the_benchmark_says_where_a_config_decodes_its_training_images(repo_root):
    from mmengine.config import Config

    from ipr_plugin.benchmark.overrides import describe
    decode = {name: describe(Config.fromfile(str(repo_root / f'configs/ipr_res50_{name}8xb64-210e_coco-256x256.py')))
              ['train_decode'] for name in ('', 'fast-')}
    assert decode == {'': 'whole (LoadImage)', 'fast-': 'by region (IPRTopdownAffine)'}


@needs_decoder
def test_the_benchmarks_pipeline_measurement_decodes_by_region(repo_root, coco_sample, monkeypatch):
    """Its steps are timed one by one, outside the dataset's own pipeline: the loader must still defer there."""
    from mmengine.config import Config

    from ipr_plugin.benchmark.measure import measure_pipeline
    from ipr_plugin.datasets.transforms.jpeg_region import DeferredJpeg
    cfg = Config.fromfile(str(repo_root / 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'))
    cfg.train_dataloader.dataset.update(data_root=str(coco_sample), ann_file='test_coco.json',
                                        data_prefix=dict(img=''))
    decoded = []
    canvas_for = DeferredJpeg.canvas_for
    monkeypatch.setattr(DeferredJpeg, 'canvas_for', lambda self, box: decoded.append(box) or canvas_for(self, box))
    result = measure_pipeline(cfg, num_samples=6, batch_size=3, seed=0)
    assert result['samples'] == 6 and len(decoded) == 6 + 4  # the untimed first samples too


def test_the_benchmarks_pipeline_measurement_checks_the_pipeline(repo_root, coco_sample):
    from ipr_plugin.benchmark.measure import measure_pipeline
    cfg, bad = _bad_pipeline(repo_root)
    cfg.train_dataloader.dataset.update(data_root=str(coco_sample), ann_file='test_coco.json',
                                        data_prefix=dict(img=''), pipeline=bad)
    with pytest.raises(ValueError, match='train_dataloader.dataset.pipeline: PhotometricDistortion comes between'):
        measure_pipeline(cfg, num_samples=2, batch_size=2, seed=0)


def _warnings_of(action) -> list:
    """The messages of the warnings ``action()`` logs on mmengine's current logger, where a run's log goes."""
    from mmengine.logging import MMLogger
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        action()
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records if r.levelno == logging.WARNING]


def test_a_loader_that_cannot_decode_by_region_says_so():
    """A warning on mmengine's current logger, where a run's log goes."""
    register_all_modules()
    assert not _warnings_of(lambda: TRANSFORMS.build(dict(type='IPRLoadImage', decode_region=True)))
    assert _warnings_of(lambda: TRANSFORMS.build(
        dict(type='IPRLoadImage', decode_region=True, color_type='color_ignore_orientation'))) == [
        'IPRLoadImage(decode_region=True) decodes whole images here (color_type, to_float32, imdecode_backend or '
        'file_client_args is not the default): the same results, more slowly']


def test_without_the_region_decoder_the_warning_says_how_to_build_it(monkeypatch):
    """A checkout or install without the C extension: the warning names what builds it, not only that it is
    missing; one that failed its start-up check says that instead."""
    from ipr_plugin.datasets.transforms import jpeg_region, load_image
    register_all_modules()
    monkeypatch.setattr(jpeg_region, '_jpeg_region', None)
    monkeypatch.setattr(load_image, 'region_decoding_available', lambda: False)
    [message] = _warnings_of(lambda: TRANSFORMS.build(dict(type='IPRLoadImage', decode_region=True)))
    assert 'the C region decoder is not built' in message and 'libjpeg-dev' in message
    assert '`python setup.py build_ext --inplace`' in message and message.endswith('the same results, more slowly')
    monkeypatch.setattr(jpeg_region, '_jpeg_region', object())
    [message] = _warnings_of(lambda: TRANSFORMS.build(dict(type='IPRLoadImage', decode_region=True)))
    assert 'the C region decoder failed its check against a full decode at start-up' in message


def test_outside_a_dataset_the_loader_decodes_whole_images_so_any_pipeline_runs(coco_sample):
    """A pipeline called by itself (no dataset in the sample, so nothing to check it against): even a transform
    that reads the image before IPRTopdownAffine gets it, and nothing is logged."""
    register_all_modules()
    steps = Compose([dict(type='IPRLoadImage', decode_region=True), dict(type='GetBBoxCenterScale'),
                     dict(type='PhotometricDistortion'), dict(type='IPRTopdownAffine', input_size=(192, 256))])
    path = str(coco_sample / '000000196141.jpg')
    sample = dict(img_path=path, bbox=np.array([[10., 20., 200., 300.]], np.float32))
    out = {}
    assert not _warnings_of(lambda: out.update(steps(sample)))
    assert out['img'].shape == (256, 192, 3) and 'img_deferred' not in out
    loaded = steps.transforms[0](dict(img_path=path))
    np.testing.assert_array_equal(loaded['img'], cv2.imread(path))


def test_a_loader_nested_in_a_wrapper_decodes_whole_images_and_says_so(coco_sample):
    """Inside a wrapper transform the loader is out of the pipeline check's sight (it reads the top level): it
    decodes whole images, so the TopdownAffine after it gets its image, and it logs one warning saying why."""
    register_all_modules()
    tail = [dict(type='GetBBoxCenterScale'), dict(type='TopdownAffine', input_size=(192, 256)),
            dict(type='PackPoseInputs')]
    data = dict(data_root=str(coco_sample), ann_file='test_coco.json', data_prefix=dict(img=''), data_mode='topdown')
    nested = DATASETS.build(dict(type='CocoDataset', **data, pipeline=[
        dict(type='mmcv.RandomApply', prob=1.0, transforms=[dict(type='IPRLoadImage', decode_region=True)]),
        *tail]))
    plain = DATASETS.build(dict(type='CocoDataset', **data, pipeline=[dict(type='LoadImage'), *tail]))
    got = []
    messages = _warnings_of(lambda: got.extend(nested[i] for i in (0, 1)))
    assert messages == ['IPRLoadImage(decode_region=True) is not in the top level of the pipeline of CocoDataset '
                        '(inside a wrapper transform?), so it cannot check what reads the image before '
                        'IPRTopdownAffine: it decodes whole images (move it to the top level, or set '
                        'decode_region=False)']
    for i, sample in enumerate(got):
        np.testing.assert_array_equal(sample['inputs'].numpy(), plain[i]['inputs'].numpy())


def test_a_keypoint_converter_may_come_between_the_loader_and_the_affine(repo_root, coco_sample):
    """It reads keypoints only: the pipeline is accepted and the loader still defers."""
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(str(repo_root / 'configs/ipr_res50_fast-8xb64-210e_coco-256x256.py'))
    pipeline = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    pipeline.insert(1, dict(type='KeypointConverter', num_keypoints=17, mapping=[(i, i) for i in range(17)]))
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(coco_sample), ann_file='test_coco.json',
                                  data_prefix=dict(img=''), pipeline=pipeline))
    loader = dataset.pipeline.transforms[0]
    results = loader(dict(dataset.get_data_info(0), dataset=dataset))
    assert 'img' not in results and 'img_deferred' in results
    assert dataset[0]['inputs'].shape[-2:] == (256, 256)


class _PlainDataset(BaseDataset):
    """mmengine's own dataset base, whose samples do not carry the dataset (mmpose's put themselves in them)."""

    def __init__(self, path: str, **kwargs) -> None:
        self.path = path
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self) -> list:
        return [dict(img_path=self.path, bbox=np.array([[10., 20., 200., 300.]], np.float32))] * 3


def test_a_dataset_that_does_not_hand_itself_to_the_loader_gets_whole_images_and_a_warning(coco_sample, tmp_path):
    """In a DataLoader worker, a sample without its dataset is a run's (slower than it could be): said once."""
    from mmengine.logging import MMLogger
    register_all_modules()
    path = str(coco_sample / '000000196141.jpg')
    dataset = _PlainDataset(path, pipeline=[dict(type='IPRLoadImage', decode_region=True),
                                            dict(type='GetBBoxCenterScale'),
                                            dict(type='IPRTopdownAffine', input_size=(192, 256))])
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1,
                                         multiprocessing_context='fork')
    log = tmp_path / 'run.log'
    handler = logging.FileHandler(log)  # the forked worker inherits it, as it inherits a run's log file
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        samples = list(loader)
    finally:
        logger.removeHandler(handler)
        handler.close()
    expected = Compose([dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                        dict(type='TopdownAffine', input_size=(192, 256))])(dataset.get_data_info(0))['img']
    assert len(samples) == 3
    for sample in samples:
        np.testing.assert_array_equal(sample['img'], expected)
    assert log.read_text().splitlines() == [
        "IPRLoadImage(decode_region=True) got a sample without results['dataset'] (its dataset does not put itself "
        "there, as mmpose's do), so it cannot check what reads the image before IPRTopdownAffine: it decodes whole "
        "images (set results['dataset'] = self in the dataset's prepare_data, or set decode_region=False)"]

"""Helpers for tests that run the real ``mim train`` / ``mim test`` (mmpose's tools) as subprocesses."""
from pathlib import Path
from typing import List

from ipr_plugin.apis.mim_runner import REPO_ROOT, MimError, parse_coco_metrics, run_mim  # noqa: F401

SAMPLE_CONFIG = REPO_ROOT / 'configs' / 'sample' / 'mmpose-ipr_res18_coco-sample-64x64.py'


def coco_sample_cfg_options(coco_sample: Path) -> List[str]:
    """``--cfg-options`` pointing the sample config's data and metric at ``coco_sample`` (absolute paths)."""
    root = f'{coco_sample}/'
    ann = 'test_coco.json'
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.bbox_file={root}test_coco_det_AP_H_56.json',
        f'test_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.bbox_file={root}test_coco_det_AP_H_56.json',
        f'val_evaluator.ann_file={root}{ann}',
        f'test_evaluator.ann_file={root}{ann}',
    ]


def detector_box_dataset(coco_sample: Path, input_size):
    """The COCO sample's detector boxes (``IPRCocoDataset``, test mode) through a minimal test pipeline."""
    from mmpose.registry import DATASETS
    pipeline = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                dict(type='TopdownAffine', input_size=input_size), dict(type='PackPoseInputs')]
    return DATASETS.build(dict(type='IPRCocoDataset', data_root=str(coco_sample), ann_file='test_coco.json',
                               bbox_file=str(coco_sample / 'test_coco_det_AP_H_56.json'),
                               data_prefix=dict(img=''), data_mode='topdown', test_mode=True, pipeline=pipeline))

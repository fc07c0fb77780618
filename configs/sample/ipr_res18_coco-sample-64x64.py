# The main recipe shrunk to run on a CPU in seconds: ResNet-18 at 64x64 on the 4-image COCO val2017 sample
# (../shared/data/coco_sample), validated with its AP-56 detector boxes, trained without the random half-body and
# box jitter (deterministic crops for the tests). For tests and smoke runs only.
_base_ = ['../ipr_res50_8xb64-210e_coco-256x256.py']

data_root = '../shared/data/coco_sample/'
train_cfg = dict(max_epochs=2, val_interval=1)
param_scheduler = [dict(type='LinearLR', begin=0, end=5, start_factor=0.1, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1))

codec = dict(type='DSNTLabel', input_size=(64, 64))
model = dict(
    backbone=dict(depth=18),
    head=dict(in_channels=512, in_featuremap_size=(2, 2), deconv_out_channels=(64, 64, 64), decoder=codec),
    init_cfg=None)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]
_sample = dict(data_root=data_root, ann_file='test_coco.json', data_prefix=dict(img=''))
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline, **_sample))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline, bbox_file=f'{data_root}test_coco_det_AP_H_56.json', **_sample))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=f'{data_root}test_coco.json')
test_evaluator = val_evaluator

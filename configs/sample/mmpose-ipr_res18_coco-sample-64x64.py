# A CPU-sized variant of mmpose's IPR (DSNT head) config for smoke tests on the 4-image COCO sample:
# ResNet-18 at 64x64 input, 2 epochs, no pretrained weights (no network access on the test machines).
# Paths are relative to the repository root; tests repoint them with --cfg-options.
_base_ = ['mmpose::body_2d_keypoint/integral_regression/coco/ipr_res50_8xb64-210e_coco-256x256.py']

custom_imports = dict(imports=['ipr_plugin'], allow_failed_imports=False)

train_cfg = dict(max_epochs=2, val_interval=1)

# The base config's values are resolved before this file is read, so every entry that embeds the codec (head
# decoder, GenerateTarget, TopdownAffine sizes) is restated with the small one.
# sigma 1.0 keeps the target peak a few pixels wide on the 16x16 grid (2.0 on 64x64 in the base).
codec = dict(
    type='IntegralRegressionLabel', input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, normalize=True)

model = dict(
    backbone=dict(depth=18),
    # ResNet-18's last stage: 512 channels at 1/32 of the input.
    head=dict(in_channels=512, in_featuremap_size=(2, 2), decoder=codec),
    init_cfg=None)

data_root = '../shared/data/coco_sample/'
ann_file = 'test_coco.json'
bbox_file = f'{data_root}test_coco_det_AP_H_56.json'

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
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

# Worker processes cost more than they save on 4 images and 2 cores.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file=ann_file, data_prefix=dict(img=''), pipeline=train_pipeline))
# Validation runs on the ~120 detector boxes, not the 12 ground-truth people: larger batches, fewer steps.
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        ann_file=ann_file,
        bbox_file=bbox_file,
        data_prefix=dict(img=''),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(ann_file=f'{data_root}{ann_file}')
test_evaluator = val_evaluator

default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))

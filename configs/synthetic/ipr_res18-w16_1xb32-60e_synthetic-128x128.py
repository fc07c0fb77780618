# A CPU-sized IPR model trained on the embedded synthetic COCO-layout dataset (tools/make_synthetic_coco.py
# writes it to data/synthetic). The README's main job (`make demo`) trains it with `mim train` (sized for a CPU).
# ResNet-18 at a quarter width (16 stem/base channels), 128x128 input, 32x32 heatmaps.
_base_ = ['../ipr_res50_8xb64-210e_coco-256x256.py']

data_root = 'data/synthetic/'
train_cfg = dict(max_epochs=60, val_interval=10)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=50, start_factor=0.01, by_epoch=False),
    dict(type='CosineAnnealingLR', begin=0, end=60, T_max=60, eta_min=1e-5, by_epoch=True),
]
auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(logger=dict(interval=10))

codec = dict(type='DSNTLabel', input_size=(128, 128))
model = dict(
    backbone=dict(depth=18, stem_channels=16, base_channels=16),
    head=dict(
        in_channels=128,
        in_featuremap_size=(4, 4),
        deconv_out_channels=(64, 64, 64),
        decoder=codec),
    init_cfg=None)

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
train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        bbox_file=f'{data_root}person_detection_results/COCO_val2017_detections_AP_H_56_person.json',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=f'{data_root}annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator

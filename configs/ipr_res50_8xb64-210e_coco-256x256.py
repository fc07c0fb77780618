# Integral Human Pose Regression, ResNet-50, 256x256 input, 64x64 heatmaps, true L1 on normalised coordinates.
# mmpose's own runs of this recipe (COCO val2017, detector human AP 56.4): 0.633 AP with its DSNTHead trained on
# SmoothL1 coordinates plus a heatmap MSE term (weight 1, sigma-2 Gaussian); this config has no heatmap term. See
# the README for what this plugin's variant measured. Training: 8 GPUs x 64 images.
_base_ = ['mmpose::_base_/default_runtime.py']

custom_imports = dict(imports=['ipr_plugin'], allow_failed_imports=False)

# runtime
train_cfg = dict(max_epochs=210, val_interval=10)

# optimizer
optim_wrapper = dict(optimizer=dict(type='Adam', lr=5e-4))

# learning policy
param_scheduler = [
    dict(type='LinearLR', begin=0, end=500, start_factor=0.001, by_epoch=False),  # warm-up
    dict(
        type='MultiStepLR',
        begin=0,
        end=train_cfg['max_epochs'],
        milestones=[170, 200],
        gamma=0.1,
        by_epoch=True)
]

# the learning rate above is for 8 GPUs x 64 images
auto_scale_lr = dict(base_batch_size=512)

# codec settings: normalised coordinates only, no CPU heatmap targets
codec = dict(type='DSNTLabel', input_size=(256, 256))

# model settings
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=50),
    head=dict(
        type='IPRHead',
        in_channels=2048,
        in_featuremap_size=(8, 8),
        num_joints=17,
        normalizer='softmax',
        beta=1.0,
        debias=False,
        loss=dict(type='IntegralL1Loss'),
        decoder=codec),
    test_cfg=dict(flip_test=True),
    # As mmpose's 0.633 run: start from mmpose's heatmap-trained SimpleBaseline ResNet-50 (backbone, deconv
    # stack and final layer). The IPR paper's alternative is ImageNet initialisation of the backbone only:
    #   model.init_cfg=None, model.backbone.init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')
    init_cfg=dict(
        type='Pretrained',
        checkpoint='https://download.openmmlab.com/mmpose/'
        'pretrain_models/td-hm_res50_8xb64-210e_coco-256x192.pth'))

# base dataset settings: IPRCocoDataset is mmpose's CocoDataset with up-front checks of every path and of
# the annotation file's keypoint count
dataset_type = 'IPRCocoDataset'
data_mode = 'topdown'
data_root = 'data/coco/'

# pipelines
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

# data loaders
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline,
    ))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_val2017.json',
        bbox_file=f'{data_root}person_detection_results/'
        'COCO_val2017_detections_AP_H_56_person.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
    ))
test_dataloader = val_dataloader

# hooks: besides mmpose's, stop training at a NaN or infinite loss (FiniteLossHook), and refuse to test a
# checkpoint that does not fit the model (CheckpointFitHook; mmengine would leave the misfit weights random)
default_hooks = dict(
    checkpoint=dict(save_best='coco/AP', rule='greater'),
    finite_loss=dict(type='FiniteLossHook'),
    checkpoint_fit=dict(type='CheckpointFitHook'),
    # a child that evaluates under another prefix (CrowdPose: 'crowdpose') must change save_best: this refuses
    # the run before training, where mmengine would fail after the first validation (monitors too)
    metric_key_check=dict(type='MetricKeyCheckHook'),
    # likewise a val pipeline cropping at another size than the head decodes for (a child that changed the input
    # size and restated only the train pipeline): IPRHead itself sees it only at the first validation
    crop_size_check=dict(type='CropSizeCheckHook'),
    # mmpose's drawing hooks (`--show-dir`, `--badcase`) skip keypoints scoring under 0.3: our scores are the
    # probability mass near each keypoint, mostly under that for a model trained with L1 alone, so draw them all
    visualization=dict(kpt_thr=0.0),
    # `--badcase` takes the head's loss as its metric unless given one; ours return a term per key (the joint one
    # also needs the maps): mmpose's L1Loss sums the pixel errors of the visible keypoints' coordinates over 2 K.
    # It compares with annotated keypoints, so test on ground-truth boxes for it
    # (--cfg-options test_dataloader.dataset.bbox_file=None); a child with metric_type='accuracy' replaces this
    # metric with dict(_delete_=True, ...)
    badcase=dict(kpt_thr=0.0, metric=dict(type='L1Loss', use_target_weight=True)))

# mmpose's visualizer, whose keypoint drawing fails under numpy >= 2.5 (a one-element radius made an int)
visualizer = dict(type='IPRPoseLocalVisualizer')

# evaluators: mmpose's CocoMetric, refusing NaN keypoints (which COCO evaluation would count as matches)
val_evaluator = dict(
    type='IPRCocoMetric',
    ann_file=f'{data_root}annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator

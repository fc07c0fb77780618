# The main recipe on CrowdPose (14 keypoints, crowded scenes): the COCO config's model, schedule, loss and
# pipelines with 14 joints, and the data and evaluation of mmpose's CrowdPose configs
# (body_2d_keypoint/topdown_heatmap/crowdpose: annotation files converted by mmpose's tools, its detector file).
# Besides the data paths, what a config for another dataset changes is here: model.head.num_joints, the
# dataset's metainfo, the evaluator (and its prefix, which save_best must name), and a start that fits the joint
# count.
_base_ = ['./ipr_res50_8xb64-210e_coco-256x256.py']

data_root = 'data/crowdpose/'
# mmpose's metainfo file; IPRCocoDataset takes it from the installed mmpose where it is not found from here
metainfo = dict(from_file='configs/_base_/datasets/crowdpose.py')

# The COCO config starts from a 17-joint COCO model; mmpose's CrowdPose configs start from ImageNet weights
# (the IPR paper's alternative too)
model = dict(
    head=dict(num_joints=14),
    init_cfg=None,
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))

train_dataloader = dict(dataset=dict(
    data_root=data_root,
    metainfo=metainfo,
    ann_file='annotations/mmpose_crowdpose_trainval.json',
    data_prefix=dict(img='images/')))
val_dataloader = dict(dataset=dict(
    data_root=data_root,
    metainfo=metainfo,
    ann_file='annotations/mmpose_crowdpose_test.json',
    bbox_file=f'{data_root}annotations/det_for_crowd_test_0.1_0.5.json',
    data_prefix=dict(img='images/')))
test_dataloader = val_dataloader

# CrowdPose's evaluation: OKS without areas, and AP by crowd index (easy / medium / hard) beside AP
val_evaluator = dict(
    ann_file=f'{data_root}annotations/mmpose_crowdpose_test.json',
    use_area=False,
    iou_type='keypoints_crowd',
    prefix='crowdpose')
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best='crowdpose/AP'))

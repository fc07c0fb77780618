# The main recipe (same model, data, schedule and losses), computed faster on GPUs:
# - batches cross from DataLoader workers as a few contiguous tensors (ipr_collate) into pinned memory, and
#   are copied to the GPU without blocking (IPRDataPreprocessor); uint8 is normalised on the GPU;
# - bf16 autocast for training (AmpOptimWrapper; the head's soft-argmax, debias, scores and losses stay in
#   float32), fp16 autocast for validation/testing, channels-last convolutions, cuDNN autotuning;
# - no host synchronisation in a training step (after the head's check of the first batches' labels): the logged
#   values are copied to the host in one go per logging interval (IPRRuntimeInfoHook);
# - the same pipelines with five of mmpose's transforms replaced by drop-ins that compute the same results with
#   less CPU: IPRLoadImage (libjpeg-turbo decoding via simplejpeg, pixel-identical to OpenCV; in training the
#   decoding is left to IPRTopdownAffine, which has the system's libjpeg-turbo decode only the rows and column
#   blocks its warp reads, same pixels; at test time each image is decoded once for the detector boxes of a
#   batch), IPRRandomFlip (the flip recorded for that decoder; for a decoded image, the flipped copy made by
#   cv2.flip, not by numpy inside the affine warp), IPRRandomBBoxTransform (the same
#   truncated-normal draws without scipy's per-call overhead), IPRPackInputs (no per-sample transpose;
#   ipr_collate stacks the batch in channels-last order, at test time too: see test_dataloader).
# torch.compile of the backbone and deconv stack: ipr_res50_fast-compile-8xb64-210e_coco-256x256.py.
_base_ = ['./ipr_res50_8xb64-210e_coco-256x256.py']

# bf16 has float32's range, so no loss scaling: mmengine's default dynamic GradScaler would only add an
# unscale pass and a host sync (its inf check) to every step.
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
model = dict(data_preprocessor=dict(type='IPRDataPreprocessor', non_blocking=True, channels_last=True))
default_hooks = dict(
    # the logged losses reach the host once per logging interval instead of once per step (same logs)
    runtime_info=dict(type='IPRRuntimeInfoHook'),
    # the model in the inputs' memory format
    channels_last=dict(type='ChannelsLastHook'),
    # testing collates with ipr_collate too, which test_dataloader cannot name (see there)
    test_collate=dict(type='IPRTestCollateHook'))
# (in default_hooks, not custom_hooks: a child config that restates custom_hooks, to add an EMAHook say, replaces
# that list and would lose them; a child switches one off with default_hooks = dict(channels_last=None))
env_cfg = dict(cudnn_benchmark=True)

codec = dict(type='DSNTLabel', input_size=(256, 256))
train_pipeline = [
    dict(type='IPRLoadImage', decode_region=True),
    dict(type='GetBBoxCenterScale'),
    dict(type='IPRRandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='IPRRandomBBoxTransform'),
    dict(type='IPRTopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='IPRPackInputs')
]
test_pipeline = [
    # one decode per val image, not one per detector box (the boxes of an image come one after another)
    dict(type='IPRLoadImage', reuse_last=True),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='IPRPackInputs')
]
# 14 loader workers per GPU process, sized for one GPU with 16 cores: with --gpus 8 set about cores / 8 (README)
train_dataloader = dict(
    num_workers=14, pin_memory=True, prefetch_factor=4, collate_fn=dict(type='ipr_collate'),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=14, pin_memory=True, prefetch_factor=4, collate_fn=dict(type='ipr_collate'),
    dataset=dict(pipeline=test_pipeline))
# mmengine's inferencer (behind MMPoseInferencer) reads test_dataloader.collate_fn as a registry name and fails on the
# dict the Runner needs, so it is left out here (the inferencer then collates with pseudo_collate, which
# IPRDataPreprocessor takes too) and IPRTestCollateHook gives the Runner's test loader ipr_collate.
test_dataloader = dict(num_workers=14, pin_memory=True, prefetch_factor=4, dataset=dict(pipeline=test_pipeline))
val_cfg = dict(fp16=True)
test_cfg = dict(fp16=True)

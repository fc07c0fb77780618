# The main recipe (same model, data, schedule and losses), computed faster on GPUs:
# - batches cross from DataLoader workers as a few contiguous tensors (ipr_collate) into pinned memory, and
#   are copied to the GPU without blocking (IPRDataPreprocessor); uint8 is normalised on the GPU;
# - bf16 autocast for training (AmpOptimWrapper; the head's soft-argmax, debias, scores and losses stay in
#   float32), fp16 autocast for validation/testing, channels-last convolutions, cuDNN autotuning.
# Optional: `--cfg-options compile=True` (torch.compile of the train step; minutes of compilation first).
_base_ = ['./ipr_res50_8xb64-210e_coco-256x256.py']

# bf16 has float32's range, so no loss scaling: mmengine's default dynamic GradScaler would only add an
# unscale pass and a host sync (its inf check) to every step.
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
model = dict(data_preprocessor=dict(type='IPRDataPreprocessor', non_blocking=True, channels_last=True))
custom_hooks = [dict(type='SyncBuffersHook'), dict(type='ChannelsLastHook')]
env_cfg = dict(cudnn_benchmark=True)

train_dataloader = dict(
    num_workers=14, pin_memory=True, prefetch_factor=4, collate_fn=dict(type='ipr_collate'))
val_dataloader = dict(
    num_workers=14, pin_memory=True, prefetch_factor=4, collate_fn=dict(type='ipr_collate'))
test_dataloader = val_dataloader
val_cfg = dict(fp16=True)
test_cfg = dict(fp16=True)

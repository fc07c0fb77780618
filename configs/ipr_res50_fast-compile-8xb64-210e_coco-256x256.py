# The fast recipe with the backbone and the deconv stack compiled by torch.compile (CompileHook): same model,
# data and recipe (compiled kernels round differently); the first iterations of training and of evaluation spend minutes compiling. CompileHook
# replaces the modules' forward methods in place, so checkpoints load into the uncompiled configs and back.
_base_ = ['./ipr_res50_fast-8xb64-210e_coco-256x256.py']

default_hooks = dict(compile=dict(type='CompileHook'))

"""IPRHead fixtures shared by the head's tests: a head whose inputs are the logits, and data samples."""
import numpy as np
import torch
from mmengine.structures import InstanceData
from mmpose.registry import MODELS
from mmpose.structures import PoseDataSample

import ipr_plugin  # noqa: F401

K, H, W = 5, 16, 12
FLIP = [0, 2, 1, 4, 3]
INPUT = (48, 64)


def logit_head(**kwargs):
    """A head whose inputs are the logits (no deconv, no final conv): lets tests craft exact heatmaps."""
    cfg = dict(type='IPRHead', in_channels=K, in_featuremap_size=(W, H), num_joints=K,
               deconv_out_channels=None, final_layer=None, decoder=dict(type='DSNTLabel', input_size=INPUT))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def samples(n, labels=None):
    out = []
    for i in range(n):
        s = PoseDataSample(metainfo=dict(flip_indices=FLIP, input_size=INPUT))
        if labels is not None:
            s.gt_instance_labels = InstanceData(keypoint_labels=labels[i:i + 1],
                                                keypoint_weights=torch.ones(1, K))
        out.append(s)
    return out


def centred_labels(codec, num_people):
    """(num_people, K, 2) labels of people centred in their crops, as top-down crops put them, from ``codec``."""
    from mmpose.registry import KEYPOINT_CODECS
    cfg = dict(type=codec, input_size=INPUT)
    if codec == 'IntegralRegressionLabel':
        cfg.update(heatmap_size=(W, H), sigma=2.0)
    encoder = KEYPOINT_CODECS.build(cfg)
    rng = np.random.default_rng(0)
    people = [np.array(INPUT) / 2 + rng.uniform(-0.3, 0.3, (1, K, 2)) * INPUT for _ in range(num_people)]
    return torch.from_numpy(np.concatenate([encoder.encode(p)['keypoint_labels'] for p in people]))

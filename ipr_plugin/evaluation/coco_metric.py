"""``CocoMetric`` that refuses NaN keypoints instead of scoring them as matches."""
from typing import Sequence

import numpy as np
from mmpose.evaluation.metrics import CocoMetric
from mmpose.registry import METRICS


@METRICS.register_module()
class IPRCocoMetric(CocoMetric):
    """mmpose's ``CocoMetric`` with a check that every predicted keypoint is finite.

    COCO keypoint evaluation (xtcocotools, like pycocotools) computes a NaN OKS for a NaN keypoint, and its
    test ``oks < threshold`` is False for NaN, so a NaN pose *matches* a person at every threshold. With the
    constant keypoint scores of mmpose's integral heads a diverged model (NaN loss) therefore still reports an
    AP (above 0.1 for all-NaN poses on the four-image COCO sample, ``tests/test_gt_evaluation.py``). This
    metric raises instead, naming the image. Same arguments and results as ``CocoMetric`` otherwise.

    Args:
        allow_nonfinite (bool): Skip the check (mmpose's behaviour). Default False.
        **kwargs: ``CocoMetric``'s arguments.
    """

    def __init__(self, allow_nonfinite: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.allow_nonfinite = allow_nonfinite

    def process(self, data_batch: Sequence[dict], data_samples: Sequence[dict]) -> None:
        if not self.allow_nonfinite:
            for sample in data_samples:
                pred = sample.get('pred_instances', {})
                for key in ('keypoints', 'keypoint_scores'):
                    value = pred.get(key)
                    if value is not None and not np.isfinite(np.asarray(value, dtype=float)).all():
                        raise ValueError(
                            f'IPRCocoMetric: the predicted {key} for image id {sample.get("img_id")} '
                            f'({sample.get("img_path", "unknown file")}) contain NaN or Inf: the model has '
                            'diverged or was given bad input. COCO evaluation would count such poses as '
                            'matches; pass allow_nonfinite=True to evaluate them anyway.')
        super().process(data_batch, data_samples)

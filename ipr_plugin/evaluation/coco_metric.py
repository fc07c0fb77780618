"""``CocoMetric`` that refuses NaN keypoints instead of scoring them as matches, and computes its final COCO
evaluation over whole arrays."""
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.dist import get_world_size
from mmengine.fileio import dump
from mmengine.logging import MMLogger
from mmpose.evaluation.metrics import CocoMetric
from mmpose.registry import METRICS
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from ..engine.agree import gather_if_any
from ..engine.logged import logged
from .functional import first_of_each_id, greedy_nms, instance_scores, keypoint_extent_areas, oks_matrix

# COCOeval's ``stats`` in order, named as mmpose's CocoMetric names them
_STATS = dict(keypoints=['AP', 'AP .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5', 'AR .75', 'AR (M)', 'AR (L)'],
              keypoints_crowd=['AP', 'AP .5', 'AP .75', 'AR', 'AR .5', 'AR .75', 'AP(E)', 'AP(M)', 'AP(H)'])


def coco_metric_names(iou_type: str) -> List[str]:
    """The names mmpose's ``CocoMetric`` of this ``iou_type`` reports (without its prefix), in its order."""
    return list(_STATS['keypoints_crowd' if iou_type == 'keypoints_crowd' else 'keypoints'])


@METRICS.register_module()
class IPRCocoMetric(CocoMetric):
    """mmpose's ``CocoMetric`` with a check that every predicted keypoint is finite, and a faster final step.

    COCO keypoint evaluation (xtcocotools, like pycocotools) computes a NaN OKS for a NaN keypoint, and its
    test ``oks < threshold`` is False for NaN, so a NaN pose *matches* a person at every threshold. With the
    constant keypoint scores of mmpose's integral heads a diverged model (NaN loss) therefore still reports an
    AP (above 0.1 for all-NaN poses on the four-image COCO sample, ``tests/test_gt_evaluation.py``). This
    metric raises instead, naming the image (in distributed validation, in every process once each has run its
    share, naming the process that found it).

    ``compute_metrics`` gives mmpose's results, bit for bit, from array-wide instance scoring and OKS NMS
    (``ipr_plugin.evaluation.functional``) and hands the results to COCOeval in memory instead of through a
    JSON file (written only when ``outfile_prefix`` asks for it). mmpose's per-instance Python version takes
    most of the final evaluation's time on COCO val2017's ~104k detector boxes. Converters, ``soft_oks_nms``
    and bottom-up results (several poses per sample) go through mmpose's own ``compute_metrics``.

    Args:
        allow_nonfinite (bool): Skip the check (mmpose's behaviour). Default False.
        **kwargs: ``CocoMetric``'s arguments.
    """

    def __init__(self, allow_nonfinite: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.allow_nonfinite = allow_nonfinite
        self._gt_converted = False  # self.coco holds ground truth converted from the samples (no annotation file)
        self._problem: Optional[str] = None  # found in distributed validation, raised in evaluate

    @property
    def reported_names(self) -> List[str]:
        """The names this metric reports, without its prefix (those of mmpose's CocoMetric, in its order)."""
        return coco_metric_names(self.iou_type)

    def process(self, data_batch: Sequence[dict], data_samples: Sequence[dict]) -> None:
        problem = self._problem or self._prediction_problem(data_samples)
        if problem is None:
            super().process(data_batch, data_samples)
        elif get_world_size() == 1:
            raise logged(ValueError(problem))
        else:  # raised in every process at once, in evaluate: alone, this one would stop and the log not say why
            self._problem = problem

    def evaluate(self, size: int) -> Dict[str, float]:
        """mmpose's, after the processes agree whether one of them found a problem in its predictions (in
        distributed validation; every process calls this): if so every process raises it, naming that process,
        and process 0 writes it to the run's log."""
        gathered = gather_if_any(self._problem is not None, self._problem)
        self._problem = None
        if gathered:
            self.results.clear()
            rank, problem = next((rank, problem) for rank, problem in enumerate(gathered) if problem)
            raise logged(ValueError(f'{problem} (found in process {rank} of {get_world_size()})'))
        return super().evaluate(size)

    def _prediction_problem(self, data_samples: Sequence[dict]) -> Optional[str]:
        """What is wrong with the predictions of ``data_samples``, naming the first image: keypoints other than
        the dataset's, or (unless ``allow_nonfinite``) NaN or Inf; None if nothing."""
        expected = (self.dataset_meta or {}).get('num_keypoints') if self.pred_converter is None else None
        for sample in data_samples:
            pred = sample.get('pred_instances', {})
            where = f'image id {sample.get("img_id")} ({sample.get("img_path", "unknown file")})'
            keypoints = pred.get('keypoints')
            if expected is not None and keypoints is not None and np.shape(keypoints)[-2] != expected:
                # mmpose's metric would fail with an IndexError after the whole inference
                return (f'IPRCocoMetric: the predictions for {where} have {np.shape(keypoints)[-2]} keypoints, the '
                        f'dataset {expected}: does model.head.num_joints match it?')
            if self.allow_nonfinite:
                continue
            box_scores = sample.get('gt_instances', {}).get('bbox_scores')
            for key, value in (('keypoints', keypoints), ('keypoint_scores', pred.get('keypoint_scores')),
                               ('bbox_scores', pred.get('bbox_scores', box_scores))):
                if value is not None and not np.isfinite(np.asarray(value, dtype=float)).all():
                    return (f'IPRCocoMetric: the {key} for {where} contain NaN or Inf: the model has diverged or '
                            'was given bad input. COCO evaluation would count such poses as matches (or rank them '
                            'anywhere); pass allow_nonfinite=True to evaluate them anyway.')
        return None

    def compute_metrics(self, results: list) -> Dict[str, float]:
        tmp_dir = None
        outfile_prefix = self.outfile_prefix
        if self.coco is None:  # no ann_file: ground truth from the samples, as mmpose converts it
            tmp_dir = tempfile.TemporaryDirectory()
            outfile_prefix = outfile_prefix or osp.join(tmp_dir.name, 'results')
            MMLogger.get_current_instance().info('Converting ground truth to coco format...')
            self.coco = COCO(self.gt_to_coco_json(gt_dicts=[gt for _, gt in results], outfile_prefix=outfile_prefix))
            self._gt_converted = True
        preds = [pred for pred, _ in results]
        if not self.format_only:
            self._check_labelled_people()
            self._check_images_annotated(preds)
        arrays = self._stack(preds)
        try:  # the converted ground truth is read again by the crowd summary: removed only once all is done
            if arrays is None:
                return super().compute_metrics(results)
            coco_results = self._coco_results(preds, arrays)
            if self.outfile_prefix is not None:  # the user keeps the file (e.g. a test-dev submission)
                dump(coco_results, f'{self.outfile_prefix}.keypoints.json', sort_keys=True, indent=4)
            if self.format_only:
                MMLogger.get_current_instance().info(f'results are saved in {osp.dirname(self.outfile_prefix)}')
                return {}
            return OrderedDict(self._coco_eval(coco_results))
        finally:
            if tmp_dir is not None:
                tmp_dir.cleanup()

    def _ground_truth(self) -> str:
        # without ann_file mmpose loads the dataset's annotation file (dataset_meta's setter), if it has one
        return 'converted from the samples' if self._gt_converted else self.ann_file or self.coco.anno_file[0]

    def _check_labelled_people(self) -> None:
        # COCOeval ignores crowds and people without a labelled keypoint (visibility > 0; CrowdPose: its
        # num_keypoints); with none left it reports AP -1, which the Runner would log as a result (and keep a
        # "best" checkpoint by)
        if self.iou_type not in ('keypoints', 'keypoints_crowd'):
            return

        def labelled(ann: dict) -> bool:
            if ann.get('iscrowd', 0):
                return False
            if self.iou_type == 'keypoints_crowd':
                return ann.get('num_keypoints', 0) > 0
            return bool(np.count_nonzero(np.asarray(ann.get('keypoints', []))[2::3] > 0))

        if not any(labelled(ann) for ann in self.coco.anns.values()):
            raise logged(ValueError(f'IPRCocoMetric: the ground truth ({self._ground_truth()}) has no person with '
                                    'labelled keypoints: COCO keypoint AP is undefined there (-1)'))

    def _check_images_annotated(self, preds: List[dict]) -> None:
        # xtcocotools' loadRes asserts the results' images are in the ground truth, without saying which: after
        # a whole test run, for an evaluator left on another annotation file than the dataset's
        missing = sorted({pred['img_id'] for pred in preds} - set(self.coco.imgs), key=lambda i: (str(type(i)), i))
        if missing:
            shown = ', '.join(map(str, missing[:5])) + (', ...' if len(missing) > 5 else '')
            raise logged(ValueError(
                f'IPRCocoMetric: the ground truth ({self._ground_truth()}) has no image with id {shown} '
                f'({len(missing)} of the evaluated images): give the evaluator the annotation file of the evaluated '
                'dataset (val_evaluator.ann_file / test_evaluator.ann_file)'))

    def _stack(self, preds: List[dict]) -> Optional[Dict[str, np.ndarray]]:
        """The predictions as arrays, one row per instance, or None where the array path does not apply."""
        if (not preds or self.pred_converter is not None or self.gt_converter is not None
                or self.nms_mode == 'soft_oks_nms'):
            return None
        if any(len(p['keypoints']) != 1 or isinstance(p['id'], Sequence) for p in preds):
            return None  # bottom-up: several poses per sample
        arrays = {}
        for key in ('keypoints', 'keypoint_scores', 'bbox_scores', 'areas', 'bbox'):
            present = [key in p for p in preds]
            if not all(present):
                if any(present):
                    return None
                continue
            values = [np.asarray(p[key]) for p in preds]
            if len({v.dtype for v in values}) != 1:
                return None  # mixed dtypes would change mmpose's arithmetic
            arrays[key] = np.concatenate(values)
        if 'areas' not in arrays:
            arrays['areas'] = keypoint_extent_areas(arrays['keypoints'])
        arrays['ids'] = np.asarray([p['id'] for p in preds])
        return arrays

    def _coco_results(self, preds: List[dict], arrays: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
        """COCO-format results (mmpose's ``results2json`` entries, in its order) after scoring and NMS."""
        poses = np.concatenate([arrays['keypoints'], arrays['keypoint_scores'][..., None]], axis=-1)
        scores = instance_scores(self.score_mode, arrays['keypoint_scores'], arrays['bbox_scores'],
                                 self.keypoint_score_thr)
        by_image: Dict[Any, List[int]] = {}
        for row, pred in enumerate(preds):
            by_image.setdefault(pred['img_id'], []).append(row)
        flat_poses, score_list = poses.reshape(len(poses), -1).tolist(), scores.tolist()  # one call, not one per row
        boxes = arrays['bbox'].tolist() if 'bbox' in arrays else None
        coco_results = []
        for rows in by_image.values():
            rows = first_of_each_id(arrays['ids'][rows], np.asarray(rows))
            if self.nms_mode == 'oks_nms':
                overlaps = oks_matrix(poses[rows], arrays['areas'][rows], self.dataset_meta['sigmas'])
                rows = rows[greedy_nms(scores[rows], overlaps, self.nms_thr)]
            for row in rows:
                entry = dict(image_id=_plain(preds[row]['img_id']), category_id=_plain(preds[row]['category_id']),
                             keypoints=flat_poses[row], score=float(score_list[row]))
                if boxes is not None:
                    entry['bbox'] = boxes[row]
                coco_results.append(entry)
        return coco_results

    def _coco_eval(self, coco_results: List[Dict[str, Any]]) -> List[tuple]:
        """mmpose's ``_do_python_keypoint_eval`` on results in memory: (name, value) pairs."""
        MMLogger.get_current_instance().info(f'Evaluating {self.__class__.__name__}...')
        anno_files = list(self.coco.anno_file)
        coco_det = self.coco.loadRes(coco_results)
        self.coco.anno_file = anno_files  # loadRes keeps its argument there: not every val epoch's results
        coco_eval = COCOeval(self.coco, coco_det, self.iou_type, self.dataset_meta['sigmas'], self.use_area)
        # the crowd summary unpacks (ground-truth file, results file) from it; only the first is read
        coco_eval.anno_file = [anno_files[0], None]
        coco_eval.params.useSegm = None
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        return list(zip(self.reported_names, coco_eval.stats))


def _plain(value: Any) -> Any:
    """A NumPy scalar or 0-d array as the Python number mmpose's JSON round trip makes of it (on ground-truth
    boxes ``category_id`` is a 0-d array, which ``loadRes`` cannot use as a key)."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value

"""Person boxes for top-down evaluation, from any mmdet detector.

Top-down pose evaluation needs person boxes from a detector (mmpose's ``bbox_file``). This runs an mmdet
model over every image of a COCO annotation file and writes the JSON list that mmpose's COCO-style datasets
load::

    [{"image_id": int, "category_id": 1, "bbox": [x, y, w, h], "score": float}, ...]

``bbox`` is in image pixels (top-left corner, width, height), converted from mmdet's ``(x1, y1, x2, y2)``;
``category_id`` is always 1 (COCO's person), the only category mmpose's loader keeps.
"""
import copy
import logging
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..arguments import check_out_file, device_problems, is_url, load_coco_file, raise_problems, write_json
from ..config_checks import building_model
from ..paths import ConfigLike, link_note, load_config, require_file
from ..progress import progress_bar

__all__ = ['make_person_boxes', 'person_records', 'resolve_person_class', 'load_image_list',
           'read_image', 'format_summary', 'argument_problems']

logger = logging.getLogger(__name__)

COCO_PERSON_CATEGORY_ID = 1
PERSON_CLASS_NAME = 'person'


def load_image_list(ann_file: str) -> List[Tuple[int, str]]:
    """``(image_id, file_name)`` of every image listed in a COCO annotation file, in file order.

    Raises:
        FileNotFoundError: ``ann_file`` is missing.
        ValueError: it is not JSON, not a COCO annotation file (e.g. a detection file's list), or an entry of its
            ``images`` has no integer ``id`` or no ``file_name`` (its other records: :func:`load_coco_file`).
    """
    require_file(ann_file, 'annotation file')
    images = load_coco_file(ann_file, image_ids=set())['images']  # width and height are the detector's to find
    listed: Dict[int, str] = {}
    for index, img in enumerate(images):
        if not (isinstance(img, dict) and isinstance(img.get('file_name'), str) and 'id' in img
                and isinstance(img['id'], (int, np.integer)) and not isinstance(img['id'], bool)):
            raise ValueError(f'{ann_file}: images entry {index} ({str(img)[:100]}) needs an integer "id" and a '
                             '"file_name"')
        listed.setdefault(int(img['id']), img['file_name'])  # detected twice, its boxes would be doubled
    if len(listed) < len(images):
        logger.warning('%s lists %d image id(s) more than once; each image is detected once, as first listed',
                       ann_file, len(images) - len(listed))
    return list(listed.items())


def resolve_person_class(dataset_meta: Optional[dict], person_class: Union[int, str, None] = None,
                         num_classes: Optional[int] = None) -> int:
    """Index of the person class among the detector's labels.

    Args:
        dataset_meta: the detector's ``dataset_meta`` (its ``classes`` are searched for names).
        person_class: an index, a class name, or ``None`` for ``'person'`` (falling back to 0, COCO's index,
            when the detector lists no classes).
        num_classes: the number of labels the detector predicts (its head's); default: its listed classes.

    Raises:
        ValueError: the name is not among the classes, or the index is not below the number of classes (such a
            label never occurs, so every box would silently be dropped).
    """
    classes = [str(c).lower() for c in (dataset_meta or {}).get('classes', ())]
    if isinstance(person_class, (int, np.integer)):
        label = int(person_class)
    else:
        name = (person_class or PERSON_CLASS_NAME).lower()
        if name in classes:
            label = classes.index(name)
        elif person_class is None and not classes:
            label = 0
        else:
            raise ValueError(f'class {name!r} is not among the detector classes {classes}')
    if num_classes is None:
        num_classes = len(classes) or None
    if label < 0 or (num_classes is not None and label >= num_classes):
        plural = 'es' if num_classes and num_classes > 1 else ''
        known = (f'the detector has {num_classes} class{plural} (labels 0 to {num_classes - 1})' if num_classes
                 else 'labels start at 0')
        raise ValueError(f'person class {label} is out of range: {known}')
    return label


def _head_num_classes(model) -> Optional[int]:
    """Labels the detector's box head predicts (one-stage ``bbox_head`` or two-stage ``roi_head.bbox_head``,
    the last stage of a cascade), or None where it has neither."""
    head = getattr(model, 'bbox_head', None) or getattr(getattr(model, 'roi_head', None), 'bbox_head', None)
    if hasattr(head, '__getitem__'):  # a cascade's ModuleList of stages
        head = head[-1]
    num_classes = getattr(head, 'num_classes', None)
    return int(num_classes) if isinstance(num_classes, (int, np.integer)) else None


def person_records(bboxes_xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, image_id: int,
                   label: int, score_thr: float) -> Tuple[List[Dict[str, Any]], int]:
    """Convert one image's detections into ``bbox_file`` records.

    Args:
        bboxes_xyxy: (N, 4) boxes ``(x1, y1, x2, y2)`` in image pixels.
        scores: (N,) detection scores.
        labels: (N,) class indices.
        image_id: COCO id of the image.
        label: the person class index; other classes are dropped.
        score_thr: boxes with ``score >= score_thr`` are kept (so 0 keeps every person box).

    Returns:
        The records (xywh boxes, ``category_id`` 1), sorted by descending score, and the number of person
        boxes above the threshold dropped for having no area (mmpose cannot crop them).
    """
    keep = (labels == label) & (scores >= score_thr)
    boxes, kept_scores = bboxes_xyxy[keep].astype(np.float64), scores[keep].astype(np.float64)
    wh = boxes[:, 2:] - boxes[:, :2]
    has_area = (wh > 0).all(axis=1)
    order = np.argsort(-kept_scores[has_area], kind='stable')
    records = [
        dict(image_id=image_id, category_id=COCO_PERSON_CATEGORY_ID,
             bbox=[float(x), float(y), float(w), float(h)], score=float(s))
        for (x, y), (w, h), s in zip(boxes[has_area][order, :2], wh[has_area][order],
                                     kept_scores[has_area][order])
    ]
    return records, int((~has_area).sum())


def read_image(path: str) -> np.ndarray:
    """Decode an image as mmdet's ``LoadImageFromFile`` does (BGR uint8, (H, W, 3)).

    Raises:
        FileNotFoundError: the file is missing.
        OSError: the file cannot be decoded as an image.
    """
    import mmcv
    from mmengine.fileio import get

    content = get(path)
    try:
        img = mmcv.imfrombytes(content, flag='color')
    except Exception as err:  # cv2 raises (rather than returning None) on e.g. an empty buffer
        raise OSError(f'not a decodable image ({err})') from err
    if img is None:
        raise OSError('not a decodable image')
    return img


def _build_test_pipeline(model) -> Any:
    """The detector's test pipeline, fed decoded arrays so that reading errors are caught here first."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    pipeline = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    # mmdet-prefixed: the pipeline is built while mmdet may not be the default scope.
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'
    return Compose(pipeline)


def argument_problems(score_thr: float = 0.3, max_images: Optional[int] = None,
                      device: Optional[str] = None) -> Dict[str, str]:
    """What is wrong with :func:`make_person_boxes`'s numeric arguments and ``device``, by argument name (empty
    when all is well).

    A threshold outside [0, 1] keeps every box or none (detector scores are probabilities), and a negative
    ``max_images`` would slice images off the end of the list: both silently wrong files. A device torch cannot
    use (:func:`~ipr_plugin.arguments.device_problem`) would fail only once the detector is built.
    """
    problems = {}
    if not 0 <= score_thr <= 1:  # NaN fails too
        problems['score_thr'] = f'must lie in [0, 1] (a detector score), got {score_thr}'
    if max_images is not None and (int(max_images) != max_images or max_images < 1):
        problems['max_images'] = f'must be a positive number of images, got {max_images}'
    if device is not None:
        problems.update(device_problems(device))
    return problems


# The detector failing on this many images in a row from the start, each with the same error, ends the run: it
# would fail on every image (not a detector's config, a pipeline that takes no such image).
SAME_ERROR_STOP = 10


def _detect(model, images: List[Tuple[int, str]], img_dir: str, label: int, score_thr: float,
            progress: bool) -> Dict[str, Any]:
    """Run the detector on each image: ``records`` (person records), ``unreadable`` (paths), ``failed``
    (``path (error)`` of images the detector failed on), ``with_boxes`` (images with a kept box),
    ``degenerate`` (zero-area boxes dropped), ``best`` (the highest person score seen, -inf if none)."""
    from mmdet.apis import inference_detector

    pipeline = _build_test_pipeline(model)
    found: Dict[str, Any] = dict(records=[], unreadable=[], failed=[], with_boxes=0, degenerate=0, best=-np.inf)
    first_errors: Optional[List[str]] = []  # the detector's errors until it first runs on an image
    for image_id, file_name in progress_bar(images, desc='person boxes', unit='img', disable=not progress):
        path = osp.join(img_dir, file_name)
        try:
            img = read_image(path)
        except OSError as err:  # FileNotFoundError included
            logger.warning('skipping unreadable image %s: %s', path, err.strerror or err)
            found['unreadable'].append(path)
            continue
        try:  # one image the detector cannot take (a 2 x 3000 strip, out of memory) costs only that image
            pred = inference_detector(model, img, test_pipeline=pipeline).pred_instances
        except Exception as err:  # noqa: BLE001 - named and counted; all of them failing is an error below
            why = f'{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ""}'
            if first_errors is not None:
                first_errors.append(why)
                if len(first_errors) == SAME_ERROR_STOP and len(set(first_errors)) == 1:
                    raise NothingDetected(f'the detector failed on each of the first {SAME_ERROR_STOP} images with '
                                          f'the same error ({why}): is the config an mmdet detector\'s, and does '
                                          'its test pipeline take these images?')
            logger.warning('skipping image %s: the detector failed on it (%s)', path, why)
            found['failed'].append(f'{path} ({why})')
            continue
        first_errors = None
        labels, scores = pred.labels.cpu().numpy(), pred.scores.cpu().numpy()
        recs, n_degenerate = person_records(pred.bboxes.cpu().numpy(), scores, labels, image_id, label, score_thr)
        found['records'].extend(recs)
        found['with_boxes'] += bool(recs)
        found['degenerate'] += n_degenerate
        if (labels == label).any():
            found['best'] = max(found['best'], float(scores[labels == label].max()))
    return found


class NothingDetected(RuntimeError):
    """The detection ran and found nothing to write: the run's outcome, which the message explains."""


def make_person_boxes(det_config: ConfigLike,
                      det_checkpoint: Optional[str],
                      ann_file: str,
                      img_dir: str,
                      out_file: str,
                      score_thr: float = 0.3,
                      device: str = 'cpu',
                      person_class: Union[int, str, None] = None,
                      cfg_options: Optional[dict] = None,
                      max_images: Optional[int] = None,
                      progress: bool = True) -> Dict[str, Any]:
    """Detect people in every image of a COCO annotation file and write mmpose's ``bbox_file``.

    Images that cannot be read (missing or not decodable), or that the detector fails on (a size its resize
    cannot take, out of memory), are logged as warnings with their path and skipped; the others are still
    processed, and the returned summary lists them. When none can be detected in, or no person box reaches
    ``score_thr`` (mmpose's dataset would refuse the file), nothing is written and an error is raised.

    Args:
        det_config: mmdet config file, or a package name such as
            ``'mmdet::rtmdet/rtmdet_m_8xb32-300e_coco.py'``.
        det_checkpoint: its checkpoint (path or URL); ``None`` keeps random weights (tests only).
        ann_file: COCO annotation file whose ``images`` are processed.
        img_dir: folder the images' ``file_name`` are relative to.
        out_file: JSON file to write (parent folders are created).
        score_thr: keep person boxes with ``score >= score_thr``; in [0, 1].
        device: torch device for the detector, e.g. ``'cpu'`` or ``'cuda:0'``.
        person_class: person label index or class name; ``None`` finds ``'person'`` in the detector's
            ``dataset_meta['classes']`` (0 when it lists none).
        cfg_options: overrides merged into the detector config (mmengine's dotted keys).
        max_images: process only the first ``max_images`` (>= 1) images (smoke tests).
        progress: show a progress bar on stderr.

    Returns:
        dict: ``num_images`` (listed), ``num_processed``, ``num_unreadable`` and ``unreadable`` (their
        paths), ``num_failed`` and ``failed`` (path and error), ``num_boxes`` written,
        ``num_images_with_boxes``, ``num_degenerate`` (zero-area person boxes
        dropped), ``person_class``, ``out_file`` and ``seconds``.

    Raises:
        FileNotFoundError: ``det_config``, ``det_checkpoint`` (local path), ``ann_file`` or ``img_dir`` is missing.
        ValueError: a bad ``score_thr``, ``max_images`` or ``device`` (:func:`argument_problems`) or
            ``person_class``, ``det_config`` cannot be read or its model built or is no detector,
            ``det_checkpoint`` is not a PyTorch checkpoint or holds under half of the detector's weights, or
            ``ann_file`` is no COCO annotation file (:func:`load_image_list`) or lists no image.
        OSError: ``out_file`` cannot be written (checked before detection).
        NothingDetected (a RuntimeError): not one of the images could be read and detected in, or no person box
            reached ``score_thr``.
    """
    from mmdet.apis import init_detector
    from mmdet.models.detectors import BaseDetector
    from mmengine.registry import DefaultScope

    from .checkpoint_check import read_checkpoint, weights_found

    raise_problems(argument_problems(score_thr, max_images, device))
    cfg = load_config(det_config, cfg_options)
    if det_checkpoint is not None and not is_url(det_checkpoint):
        require_file(det_checkpoint, 'detector checkpoint')
    images = load_image_list(ann_file)
    if not images:
        raise ValueError(f'{ann_file} lists no images')
    if not osp.isdir(img_dir):
        raise FileNotFoundError(f'image folder not found: {img_dir}{link_note(img_dir)}')
    if not is_url(img_dir) and not any(osp.isfile(osp.join(img_dir, name)) for _, name in images):
        # before the detector is built, not one warning per image after it
        raise FileNotFoundError(f'none of the {len(images)} images listed in {ann_file} is in {img_dir} (e.g. '
                                f'{osp.join(img_dir, images[0][1])}): is it the image folder of that file?')
    check_out_file(out_file, inputs=(ann_file, det_checkpoint, det_config))
    if det_checkpoint is not None:
        # Read up front (init_detector reads it again) because torch fails on a file that is not a checkpoint
        # with errors such as "KeyError: 101", naming neither the file nor the problem; kept to compare its keys.
        checkpoint = read_checkpoint(det_checkpoint)
    if max_images is not None:
        images = images[:max_images]

    # Inference only: the weights come from the checkpoint, so a pretrained-backbone download is never needed.
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None
    # mmdet's init_detector makes mmdet the process's default scope; the caller's (mmpose's, in a pose script)
    # comes back afterwards, so that building mmpose modules by unprefixed name still works.
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        with building_model(cfg):
            model = init_detector(cfg, det_checkpoint, device=device)
        if not isinstance(model, BaseDetector):  # it would fail on every image, one warning each
            raise ValueError(f'{det_config} is not a detector config: its model is a {type(model).__name__}, not '
                             "one of mmdet's detectors")
        if det_checkpoint is not None:  # init_detector only warns, and the detector runs with random weights
            found, total = weights_found(model, checkpoint, det_checkpoint)
            if found < total / 2:
                raise ValueError(f'detector checkpoint {det_checkpoint} holds {found} of the {total} weights of '
                                 f"{det_config}'s {type(model).__name__} (by name and shape): not a checkpoint of "
                                 'this config (a pose model\'s, or another detector\'s?)')
            del checkpoint
        label = resolve_person_class(getattr(model, 'dataset_meta', None), person_class, _head_num_classes(model))
        start = time.perf_counter()
        found = _detect(model, images, img_dir, label, score_thr, progress)
    skipped = found['unreadable'] + found['failed']
    if len(skipped) == len(images):  # an empty file here would read as "no person anywhere"
        raise NothingDetected(f'none of the {len(images)} images listed in {ann_file} could be read from '
                              f'{img_dir} or detected in (e.g. {skipped[0]}); nothing written to {out_file}')
    if not found['records']:  # mmpose's dataset would refuse the file, or evaluate no person at all
        if found['best'] == -np.inf:  # no threshold can help: the weights or the class are wrong
            why = (f'no box of class {label} at all: check the checkpoint (weights trained for this config?) '
                   'and --person-class')
        else:
            why = f"the highest was {found['best']:.3f}: lower the score threshold"
        raise NothingDetected(f'no person box scored >= {score_thr} in the {len(images) - len(skipped)} images '
                              f'detected; nothing written to {out_file}; {why}')

    write_json(out_file, found['records'])
    return dict(num_images=len(images), num_processed=len(images) - len(skipped),
                num_unreadable=len(found['unreadable']), unreadable=found['unreadable'],
                num_failed=len(found['failed']), failed=found['failed'], num_boxes=len(found['records']),
                num_images_with_boxes=found['with_boxes'], num_degenerate=found['degenerate'], person_class=label,
                out_file=out_file, seconds=time.perf_counter() - start)


def format_summary(stats: Dict[str, Any]) -> str:
    """One human-readable line from :func:`make_person_boxes`'s summary."""
    line = (f"{stats['num_boxes']} person boxes in {stats['num_images_with_boxes']}/{stats['num_processed']} "
            f"images -> {stats['out_file']} ({stats['seconds']:.1f} s)")
    if stats['num_unreadable']:
        line += f"; {stats['num_unreadable']} unreadable image(s) skipped: {', '.join(stats['unreadable'])}"
    if stats.get('num_failed'):
        line += f"; {stats['num_failed']} image(s) the detector failed on skipped: {', '.join(stats['failed'])}"
    return line

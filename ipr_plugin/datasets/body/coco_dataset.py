"""mmpose's ``CocoDataset`` with input checks that fail early, with one clear error naming the culprit.

mmpose itself reports a missing file as a bare path from deep inside loading, a missing image folder only when
the first image fails to read (in a dataloader worker), and an annotation file with another keypoint count not at
all: it loads, then shapes disagree somewhere in the head or the metric. Here:

- a missing ``data_root``, annotation file, image folder or detection file raises ``FileNotFoundError`` naming
  the path and the config key it came from;
- an annotation file whose instances do not have the metainfo's keypoint count (17 for COCO) raises
  ``ValueError`` naming the file, the count found and the count expected;
- an annotation with a non-finite box, keypoint or area value raises ``ValueError`` naming it, its image and the
  file (mmpose would pass the NaN on until the label encoder, which cannot say where it came from);
- an annotation file that is not JSON, an image entry without a ``file_name`` or a positive ``width`` and
  ``height`` (with a detection file: an image with person boxes, the only ones mmpose reads), an annotation
  without an ``id``, with a box that is not 4 numbers or null keypoints raises ``ValueError`` naming the record
  and the file (mmpose fails with a bare ``KeyError`` or unpacking error; :mod:`.coco_checks`); annotations on
  no image of the file's list, which COCO's index never reaches, are reported with one warning;
- a detection file that is not JSON, has no person boxes, or has a person box with an image_id that is not an
  int or not an image of the annotation file, without 4 finite numbers or without a finite score raises
  ``ValueError`` naming the file and the entry; person boxes with no area are dropped with one warning (mmpose
  would estimate a pose on a point);
- a dataset left empty by filtering raises ``ValueError`` saying why, instead of mmengine's
  ``need at least one array to concatenate``;
- an image that loads at another size than the annotation file gives for it raises ``ValueError`` naming the
  image and both sizes, when its sample is loaded: its boxes and keypoints would miss the person (a resized or
  replaced image folder; a file whose EXIF orientation OpenCV applies while the annotation describes the stored
  pixels). mmpose trains on such a sample as if nothing were wrong. ``tools/check_data.py`` finds them all at once
  (:func:`ipr_plugin.apis.data_check.check_data`).

It also hands out each sample's metainfo entries more cheaply (see :meth:`IPRCocoDataset.get_data_info`).
"""
import copy
import json
import logging
import math
import os.path as osp
import pickle
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.fileio import load
from mmengine.logging import print_log
from mmpose.datasets import CocoDataset
from mmpose.registry import DATASETS

from ...arguments import is_url
from ...paths import installed_metainfo, link_note
from .coco_checks import (RecordError, annotation_problem, detection_message, detection_problem, duplicate_id_problem,
                          file_problem, image_size_table, unusable_counts, without_keypoints)
from .coco_checks import is_number as _is_number
from ..transforms.jpeg import file_orientation
from ..transforms.load_image import deferred_decode_problem

# The metainfo entries mmpose's BaseCocoStyleDataset.get_data_info adds to every sample for the pipeline.
_SAMPLE_METAINFO = ('dataset_name', 'upper_body_ids', 'lower_body_ids', 'flip_pairs', 'dataset_keypoint_weights',
                    'flip_indices', 'skeleton_links')


@DATASETS.register_module()
class IPRCocoDataset(CocoDataset):
    """``mmpose.datasets.CocoDataset`` that checks its inputs before loading: its arguments plus
    ``check_image_size``, and its behaviour except where the module documentation says.

    Args:
        ann_file: annotation file, relative to ``data_root`` unless absolute.
        bbox_file: person detection results for top-down testing; used as given (mmpose does not join it with
            ``data_root``).
        data_root: root of ``ann_file`` and ``data_prefix``.
        data_prefix: ``dict(img=folder)``, the image folder relative to ``data_root`` unless absolute.
        check_image_size: compare each loaded image's size (the ``ori_shape`` its pipeline packs) with the
            annotation file's ``height`` and ``width`` for it, and raise on a mismatch. One array lookup per
            sample; a pipeline that packs no ``ori_shape`` or ``img_id`` is not checked. Default True.
        **kwargs: the other arguments of ``CocoDataset`` (``data_mode``, ``test_mode``, ``pipeline``, ...).

    Raises:
        FileNotFoundError: at load time, for a missing ``data_root``, annotation file, image folder or detection
            file.
        ValueError: at load time, for an annotation file whose keypoint count differs from the metainfo's, an
            annotation with a non-finite value, an invalid detection file or entry, or nothing left to use; when
            a sample is loaded, for an image whose size differs from the annotation file's.
    """

    METAINFO: dict = installed_metainfo(CocoDataset.METAINFO)

    def __init__(self, ann_file: str = '', bbox_file: Optional[str] = None, data_root: Optional[str] = None,
                 data_prefix: Optional[Dict[str, str]] = None, check_image_size: bool = True, **kwargs) -> None:
        data_prefix = dict(img='') if data_prefix is None else data_prefix
        # The values as written in the config; mmengine joins them with data_root before loading and the error
        # messages show both, since the config is what the user has to fix.
        self._config_paths = dict(ann_file=ann_file, bbox_file=bbox_file, data_root=data_root,
                                  data_prefix=copy.deepcopy(data_prefix))
        self.check_image_size = check_image_size
        # (height, width) of every image of the annotation file, by sorted image id: arrays, not a dict, so that
        # forked dataloader workers do not copy it page by page as they touch its reference counts
        self._image_ids, self._image_sizes = np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
        if 'metainfo' in kwargs:
            kwargs['metainfo'] = installed_metainfo(kwargs['metainfo'])
        super().__init__(ann_file=ann_file, bbox_file=bbox_file, data_root=data_root, data_prefix=data_prefix,
                         **kwargs)

    def get_data_info(self, idx: int) -> dict:
        """The sample ``idx`` as mmpose's ``get_data_info`` gives it, with fresh copies of the metainfo entries.

        mmpose deep-copies seven metainfo entries for every sample; unpickling one stored snapshot of them
        gives equal, equally independent copies for less (``BENCHMARKS.md``: ``get_data_info`` 0.12 -> 0.06 ms
        per sample). The dataset's metainfo does not change after construction.
        """
        data_info = BaseDataset.get_data_info(self, idx)
        if getattr(self, '_sample_metainfo', None) is None:
            self._sample_metainfo = pickle.dumps({key: self._metainfo[key] for key in _SAMPLE_METAINFO})
        for key in _SAMPLE_METAINFO:
            if key in data_info:  # as mmpose: these names are reserved
                raise KeyError(f'IPRCocoDataset: "{key}" is a reserved key for `metainfo`, but the sample '
                               f'{idx} already has it')
        data_info.update(pickle.loads(self._sample_metainfo))
        return data_info

    def load_data_list(self) -> list:
        """Check the inputs and the pipeline, then load as ``CocoDataset`` does."""
        self._check_paths()
        problem = deferred_decode_problem(self.pipeline.transforms)  # before the annotations: fails fast
        if problem:
            raise ValueError(f'IPRCocoDataset: {problem}')
        # Why annotations were set aside, for the error if none is left (see filter_data).
        self._num_annotations, self._unusable = 0, None
        return super().load_data_list()

    def prepare_data(self, idx: int) -> Any:
        """``CocoDataset.prepare_data``, then the loaded image's size checked against the annotation file's."""
        data = super().prepare_data(idx)
        if self.check_image_size and isinstance(data, dict):
            samples = data.get('data_samples', data)
            # a test-time-augmentation pipeline packs a list of samples, all of the same image
            for sample in samples if isinstance(samples, (list, tuple)) else [samples]:
                meta = sample if isinstance(sample, dict) else getattr(sample, 'metainfo', {})
                problem = self.image_size_problem(meta.get('img_id'), meta.get('ori_shape'), meta.get('img_path'))
                if problem:
                    raise ValueError(f'{problem}; check_image_size=False turns this check off')
        return data

    def _load_annotations(self) -> Tuple[List[dict], List[dict]]:
        with self._naming_bad_records():
            loaded = super()._load_annotations()
        if not isinstance(self.coco.dataset.get('images'), list):  # COCO's index then finds no annotation
            raise self._file_error(file_problem(self.coco.dataset))
        duplicated = duplicate_id_problem(self.coco.dataset)
        if duplicated:  # the instances just parsed may hold another image's annotations
            raise self._file_error(duplicated)
        orphans = [ann['id'] for ann in self.coco.dataset.get('annotations') or []
                   if ann['image_id'] not in self.coco.imgs]
        if orphans:  # COCO's index reaches annotations through their image only: these would vanish unsaid
            print_log(f'{type(self).__name__}: {len(orphans)} annotations in {self.ann_file} are on no image of '
                      f'its "images" list and are not used (ids {", ".join(map(str, orphans[:5]))}'
                      f'{", ..." if len(orphans) > 5 else ""})', logger='current', level=logging.WARNING)
        self._record_image_sizes()
        return loaded

    @contextmanager
    def _naming_bad_records(self) -> Iterator[None]:
        """mmpose reads the annotation file and indexes its images unchecked: a file that is not JSON, or an
        image without a file_name, width or height, fails with an error that names neither. Name them."""
        try:
            yield
        except json.JSONDecodeError as error:
            raise ValueError(f'{type(self).__name__}: the annotation file {self.ann_file} is not valid JSON: '
                             f'{error}') from error
        except RecordError:  # named already, by parse_data_info
            raise
        except (AssertionError, KeyError, TypeError, ValueError) as error:
            coco = getattr(self, 'coco', None)  # absent when COCO's index refused the file
            try:
                problem = file_problem(coco.dataset if coco is not None else load(self.ann_file))
            except Exception:  # noqa: BLE001 - only names the culprit of the error being raised
                problem = None
            if problem is None:  # not the file's records: the error as it was
                raise
            raise self._file_error(problem) from error

    def parse_data_info(self, raw_data_info: dict) -> Optional[dict]:
        """``CocoDataset.parse_data_info`` after checking the instance's keypoint count, with non-finite values
        refused.

        Checking each instance as it is parsed costs one ``len`` and no second read of the (possibly large,
        e.g. 240 MB for COCO train) annotation file; the finiteness checks run on the arrays mmpose builds anyway.
        """
        ann = raw_data_info['raw_ann_info']
        self._num_annotations += 1
        self._check_instance_keypoint_count(ann)
        data_info = super().parse_data_info(raw_data_info)
        if data_info is not None:
            self._check_finite(ann, data_info)
        return data_info

    def _get_topdown_data_infos(self, instance_list: List[dict]) -> List[dict]:
        data_list = super()._get_topdown_data_infos(instance_list)
        if not data_list:  # counted only then: the error message is the only use
            self._unusable = unusable_counts(instance_list, self._num_annotations)
        return data_list

    def filter_data(self) -> List[dict]:
        """``CocoDataset.filter_data``; an empty result raises, since mmengine cannot serialize it."""
        data_list = super().filter_data()
        if data_list:
            return data_list
        name = type(self).__name__
        if self.bbox_file:  # _load_detection_results refuses a file without usable person boxes
            raise ValueError(f'{name}: no person box in the detection file {self.bbox_file} has a score of at '
                             f'least filter_cfg.bbox_score_thr={self.filter_cfg["bbox_score_thr"]}: nothing to '
                             f'test on')
        reasons = ', '.join(f'{n} {why}' for why, n in (self._unusable or {}).items() if n)
        counts = f'{self._num_annotations} annotations' + (f': {reasons}' if reasons else '')
        raise ValueError(f'{name}: no usable instances in {self.ann_file} ({counts}): nothing to '
                         f'{"test" if self.test_mode else "train"} on')

    def _load_detection_results(self) -> List[dict]:
        """``CocoDataset._load_detection_results`` after checking the detection file, without person boxes of no
        area (mmpose would estimate a pose on a point in them)."""
        # Detection results bring their own boxes and dummy keypoints: nothing of the annotation file goes
        # through parse_data_info, so its keypoint count is checked here (val files are small).
        self._check_detection_inputs()
        with self._naming_bad_records():
            data_list = super()._load_detection_results()
        self._record_image_sizes()
        kept = [info for info in data_list if (info['bbox'][0, 2:] > info['bbox'][0, :2]).all()]
        if len(kept) < len(data_list):
            if not kept:
                raise ValueError(f'{type(self).__name__}: the detection file {self.bbox_file} has no person boxes '
                                 f'with a positive width and height ({len(data_list)} without)')
            print_log(f'{type(self).__name__}: dropped {len(data_list) - len(kept)} of {len(data_list)} person '
                      f'boxes with a width or height <= 0 from the detection file {self.bbox_file}: no pose can be '
                      'estimated in them', logger='current', level=logging.WARNING)
        return kept

    # -- checks ------------------------------------------------------------------------------------------------

    def _where(self, key: str, raw: Optional[str], joined: bool = True) -> str:
        """Where a checked path came from: its config key and value, of a train or a val/test set (test_mode),
        and the data_root it was joined with."""
        text = f"config key {key}={raw!r} of the {'val/test' if self.test_mode else 'train'} set"
        if joined and raw and not osp.isabs(raw) and self.data_root:
            text += f', joined with data_root={self.data_root!r}'
        return text

    def _check_detection_inputs(self, seconds: Optional[Dict[str, float]] = None) -> None:
        """The checks before mmpose loads the detection file, in order; with ``seconds``, each one's time is
        recorded there (the benchmark's split of what they cost)."""
        start = time.perf_counter()

        def done(step: str) -> None:
            nonlocal start
            if seconds is not None:
                seconds[step], start = time.perf_counter() - start, time.perf_counter()

        # mmpose reads file_name, width and height only of the images with person boxes: those are checked
        # once the detection file is known to be sound
        data = self._check_file_keypoint_count(image_ids=set())
        done('annotation file read, keypoint counts')
        entries = self._read_detection_file()
        done('detection file read')
        self._check_detections(entries, {img['id'] for img in data.get('images', [])})
        problem = file_problem(data, {det['image_id'] for det in entries if det['category_id'] == 1})
        if problem:
            raise self._file_error(problem)
        done('detection entries')

    def _check_paths(self) -> None:
        name, cfg = type(self).__name__, self._config_paths
        root = self.data_root
        if root and not is_url(root) and not osp.isdir(root):
            raise FileNotFoundError(f'{name}: data_root not found: {osp.abspath(root)}{link_note(root)} '
                                    f'({self._where("data_root", cfg["data_root"], joined=False)})')
        if not self.ann_file:
            raise FileNotFoundError(f'{name}: no annotation file given (config key ann_file is empty)')
        if not is_url(self.ann_file) and not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'{name}: annotation file not found: {osp.abspath(self.ann_file)}'
                                    f'{link_note(self.ann_file)} ({self._where("ann_file", cfg["ann_file"])})')
        img_dir = self.data_prefix.get('img', '')
        if img_dir and not is_url(img_dir) and not osp.isdir(img_dir):
            raise FileNotFoundError(f'{name}: image folder not found: {osp.abspath(img_dir)}{link_note(img_dir)} '
                                    f'({self._where("data_prefix.img", cfg["data_prefix"].get("img"))})')
        if self.bbox_file and not is_url(self.bbox_file) and not osp.isfile(self.bbox_file):
            hint = ''
            if root and osp.isfile(osp.join(root, self.bbox_file)):
                hint = f'; {osp.join(root, self.bbox_file)} exists: give bbox_file that full path'
            where = self._where('bbox_file', cfg['bbox_file'], joined=False)
            raise FileNotFoundError(f'{name}: detection (bbox) file not found: {osp.abspath(self.bbox_file)}'
                                    f'{link_note(self.bbox_file)} '
                                    f'({where}, used as given: mmpose does not join bbox_file with data_root{hint})')

    def _file_error(self, problem: Optional[str]) -> ValueError:
        """The error naming ``problem`` (from :func:`file_problem`) of the annotation file."""
        return ValueError(f'{type(self).__name__}: the annotation file {self.ann_file}: {problem}')

    def _keypoint_count_error(self, what: str, found: str) -> ValueError:
        expected = self.metainfo['num_keypoints']
        return RecordError(f'{type(self).__name__}: annotation file {self.ann_file}: {what} has {found} but the '
                           f'dataset metainfo ({self.metainfo.get("dataset_name", "?")}) expects {expected} '
                           f'keypoints; give a metainfo matching the file (metainfo=dict(from_file=...)) or the '
                           f'annotation file matching the metainfo')

    def _check_instance_keypoint_count(self, ann: dict) -> None:
        """The record's structure (what mmpose unpacks unchecked), then its keypoint count."""
        if 'bbox' not in ann or 'keypoints' not in ann:  # CocoDataset skips the instance
            return
        problem = annotation_problem(ann)
        if problem:
            raise RecordError(f'{type(self).__name__}: annotation id {ann.get("id")} (image {ann.get("image_id")}) '
                              f'in {self.ann_file} has {problem}')
        values = ann['keypoints']
        if without_keypoints(ann) and self.data_mode == 'topdown':
            return  # dropped by mmpose's top-down filter
        # _metainfo, not metainfo: the property deep-copies the whole metainfo, once per instance here.
        if len(values) != 3 * self._metainfo['num_keypoints']:
            found = f'{len(values) // 3} keypoints' if len(values) % 3 == 0 else \
                f'{len(values)} keypoint values, not (x, y, visibility) triplets'
            raise self._keypoint_count_error(f'annotation id {ann.get("id")} (image {ann.get("image_id")})', found)

    def _check_file_keypoint_count(self, image_ids: Optional[set] = None) -> dict:
        """Check every category and annotation of ``ann_file`` (and the images ``image_ids``, as
        :func:`file_problem` does); returns the loaded file."""
        with self._naming_bad_records():
            data = load(self.ann_file)
        problem = file_problem(data, image_ids)
        if problem:
            raise self._file_error(problem)
        expected = self.metainfo['num_keypoints']
        for cat in data.get('categories', []):
            if 'keypoints' in cat and len(cat['keypoints']) != expected:
                raise self._keypoint_count_error(f'category {cat.get("name")!r}',
                                                 f'{len(cat["keypoints"])} keypoint names')
        # Every annotation, not only the first: the evaluation reads each, after the whole inference.
        for ann in data.get('annotations', []):
            self._check_instance_keypoint_count(ann)
        return data

    def _check_finite(self, ann: dict, data_info: dict) -> None:
        # The raw box: mmpose clips it to the image, which turns an infinite size into the image border.
        box = ann['bbox']
        if not all(_is_number(v) and math.isfinite(v) for v in box):
            what = f'bbox {box}'
        elif not (np.isfinite(data_info['keypoints']).all() and np.isfinite(data_info['keypoints_visible']).all()):
            values, limit = ann['keypoints'], float(np.finfo(np.float32).max)  # mmpose stores them as float32
            k = next(j for j, v in enumerate(values) if not (_is_number(v) and abs(v) <= limit)) // 3
            what = f'keypoint {k} (x, y, visibility) = {tuple(values[3 * k:3 * k + 3])}'
        elif not np.isfinite(data_info['area']).all():
            what = f'area {ann.get("area")}'
        else:
            return
        raise RecordError(f'{type(self).__name__}: annotation id {ann.get("id")} (image {ann.get("image_id")}) '
                          f'in {self.ann_file} has {what}: every value must be a finite number')

    def _read_detection_file(self) -> list:
        try:
            entries = load(self.bbox_file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f'{type(self).__name__}: the detection file {self.bbox_file} is not valid JSON: '
                             f'{error}') from error
        if not isinstance(entries, list):
            raise ValueError(f'{type(self).__name__}: the detection file {self.bbox_file} has no person boxes: it '
                             f'holds a {type(entries).__name__}, not a list of detections')
        return entries

    def _check_detections(self, entries: list, images: set) -> None:
        """Check every person entry: on one of ``images`` (ids), 4 finite box numbers, a finite score."""
        found = detection_problem(entries, images, self.ann_file)
        if found is not None:
            raise ValueError(f'{type(self).__name__}: {detection_message(self.bbox_file, entries, found)}')

    def _record_image_sizes(self) -> None:
        # mmpose's COCO index of the annotation file, which it deletes once the data list is built
        self._image_ids, self._image_sizes = image_size_table(self.coco.imgs.values())

    def image_size_problem(self, img_id, loaded: Optional[tuple], img_path: Optional[str]) -> Optional[str]:
        """Why the image ``img_id``, loaded from ``img_path`` at ``loaded`` = (height, width) pixels, does not fit
        the annotation file, or None when it fits or cannot be told (an image or size the file does not give)."""
        if loaded is None or not _is_number(img_id):
            return None
        pos = int(np.searchsorted(self._image_ids, img_id))
        if pos == len(self._image_ids) or self._image_ids[pos] != img_id:
            return None
        expected = tuple(int(v) for v in self._image_sizes[pos])
        if min(expected) <= 0 or tuple(loaded[:2]) == expected:
            return None
        (h, w), (eh, ew) = loaded[:2], expected
        why = 'its boxes and keypoints would miss the person (was the image folder resized or replaced?)'
        if (h, w) == (ew, eh):
            orientation = file_orientation(img_path)
            if orientation in (5, 6, 7, 8):
                why = (f'its EXIF orientation {orientation} turned it as it was decoded (OpenCV, and so mmpose\'s '
                       'LoadImage, applies EXIF rotations) while the annotation describes the pixels as stored; '
                       "load the images without the rotation (color_type='color_ignore_orientation' in the "
                       "pipeline's LoadImage or IPRLoadImage), or rotate the file and its annotations")
        return (f'{type(self).__name__}: image {img_path} (id {img_id}) loads as {w}x{h} pixels but the annotation '
                f'file {self.ann_file} gives {ew}x{eh}: {why}')

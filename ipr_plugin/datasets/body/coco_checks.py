"""Checks of a COCO annotation file's raw records: what mmpose's ``CocoDataset`` indexes or unpacks unchecked.

mmpose reads ``file_name``, ``width`` and ``height`` of every image and unpacks every instance's ``bbox`` into
four values; a record without them fails with a bare ``KeyError: 'width'`` or ``not enough values to unpack``
that names neither the record nor the file. Each function here returns why a record is unusable, or None; the
dataset adds the file's name and raises.
"""
import math
from typing import Any, Dict, Hashable, Iterable, List, Optional, Tuple

import numpy as np

IMAGE_KEYS = ('id', 'file_name', 'width', 'height')


class RecordError(ValueError):
    """A record of an annotation or detection file that the dataset has already named precisely: raised as it
    is, not replaced by a guess at the file's first bad record."""


def is_number(value: Any) -> bool:
    """A real number: a bool or a numeric string would be converted by numpy without complaint; numpy numbers
    come from pickled detection files, which mmengine's ``load`` reads as well."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def image_problem(img: Any) -> Optional[str]:
    """Why an ``images`` entry cannot be loaded: not an object, or no ``id``, ``file_name``, or a ``width`` or
    ``height`` that is not a positive number of pixels."""
    if not isinstance(img, dict):
        return f'image entry {img!r} is not an object'
    name = f'image id {img.get("id")!r}' + (f' ({img["file_name"]})' if 'file_name' in img else '')
    missing = [key for key in IMAGE_KEYS if key not in img]
    if missing:
        return f'{name} has no {" and no ".join(missing)}'
    for key in ('width', 'height'):
        if not (is_number(img[key]) and img[key] > 0):
            return f'{name} has {key} {img[key]!r}, not a positive number of pixels'
    return None


def annotation_problem(ann: dict) -> Optional[str]:
    """Why an annotation that mmpose parses (one with ``bbox`` and ``keypoints``; it skips the others) cannot
    be: no ``id``, a ``bbox`` that is not 4 numbers, ``keypoints`` that is not a list, an ``area`` that is not
    a number. Non-finite numbers and the keypoint count are checked by the dataset."""
    box, keypoints = ann['bbox'], ann['keypoints']
    if 'id' not in ann:
        return 'no id'
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(map(is_number, box)):
        return f'bbox {box!r}, not [x, y, w, h] (4 numbers)'
    if not isinstance(keypoints, (list, tuple)):
        return f'keypoints {keypoints!r}, not a list of (x, y, visibility) triplets'
    if 'area' in ann and not is_number(ann['area']):
        return f'area {ann["area"]!r}, not a number'
    return None


def without_keypoints(ann: dict) -> bool:
    """A person annotated without keypoints: ``"keypoints": []`` (or none) and ``num_keypoints`` 0 (or none).
    mmpose's top-down filter drops it, as it drops one with 3 x K zeros, so it is no other keypoint count."""
    return not ann.get('keypoints') and not ann.get('num_keypoints')


def file_problem(dataset: Any, image_ids: Optional[set] = None) -> Optional[str]:
    """Why a loaded annotation file cannot be indexed: not an object, no ``images`` list, its first unusable
    image entry, or its first annotation without an ``id`` or ``image_id`` (COCO's index needs both).

    ``image_ids``: the images whose ``file_name``, ``width`` and ``height`` will be read (those with person
    detections); the others need only be objects with an ``id``. None: every image."""
    if not isinstance(dataset, dict):
        return f'holds a {type(dataset).__name__}, not a COCO object with images, annotations and categories'
    images = dataset.get('images')
    if not isinstance(images, list):
        return f'has no "images" list (COCO finds annotations through their image; {images!r} given)'
    if image_ids is not None:  # an entry COCO's index cannot take stays in, whatever its id
        images = [img for img in images if not isinstance(img, dict) or 'id' not in img
                  or not isinstance(img['id'], Hashable) or img['id'] in image_ids]
    problem = next((problem for problem in map(image_problem, images) if problem), None)
    if problem:
        return problem
    # COCO's index files an annotation under its category when the file has categories
    needed = ('id', 'image_id', 'category_id') if 'categories' in dataset else ('id', 'image_id')
    for i, ann in enumerate(dataset.get('annotations') or []):
        if not isinstance(ann, dict):
            return f'annotation {i} (counting from 0) is not an object: {str(ann)[:80]}'
        missing = [key for key in needed if key not in ann]
        if missing:
            known = ', '.join(f'{key} {ann[key]!r}' for key in ('id', 'image_id') if key in ann)
            return f'annotation {i} (counting from 0{"; " + known if known else ""}) has no {" and no ".join(missing)}'
    return None


def duplicate_id_problem(dataset: dict) -> Optional[str]:
    """Why a loaded annotation file's ids cannot be trusted: an annotation id or an image id used twice.

    COCO's index keeps one record per id, and mmpose fetches an image's annotations by id: with annotation ids
    restarting at 1 in every image (a common converter slip), every image gets the keypoints of the last image
    holding each id, silently; with an image id used twice, one image's entry is lost."""
    for kind, records in (('image', dataset.get('images') or []), ('annotation', dataset.get('annotations') or [])):
        seen: Dict[Any, int] = {}
        for i, record in enumerate(records):
            ident = record.get('id') if isinstance(record, dict) else None
            if not isinstance(ident, Hashable) or ident is None:
                continue
            if ident in seen:
                if kind == 'image' and records[seen[ident]] == record:
                    continue  # the same entry listed again: COCO's index keeps it once, and nothing is lost
                where = ''
                if kind == 'annotation':
                    first = records[seen[ident]]
                    where = f' (on images {first.get("image_id")!r} and {record.get("image_id")!r})'
                return (f'uses {kind} id {ident!r} twice{where}: {kind} ids must be unique, as COCO\'s index keeps '
                        f'one {kind} per id ({kind}s {seen[ident]} and {i}, counting from 0)')
            seen[ident] = i
    return None


def detection_problem(entries: list, images: set, ann_file: str) -> Optional[Tuple[Optional[int], str]]:
    """The first problem of a detection file's entries, as (entry index, what is wrong with it), or
    (None, why) when none is a person box, or None. A person entry (``category_id`` 1) needs an int
    ``image_id`` among ``images`` (mmpose's COCO index finds images by int only, and crashes otherwise),
    a ``bbox`` of 4 finite numbers and a finite ``score``."""
    index, boxes, scores = [], [], []
    for i, det in enumerate(entries):
        if type(det) is not dict or 'category_id' not in det:
            return i, 'is not an object with a category_id'
        if det['category_id'] != 1:
            continue
        image_id, box, score = det.get('image_id'), det.get('bbox'), det.get('score')
        if type(image_id) is not int:
            return i, ('has no image_id' if image_id is None else
                       f'has image_id {image_id!r} of type {type(image_id).__name__}, not int')
        if image_id not in images:
            return i, f'is on no image of the annotation file {ann_file}'
        if not isinstance(box, (list, tuple, np.ndarray)) or len(box) < 4 or not all(map(is_number, box[:4])):
            return i, f'has bbox {box!r}, not [x, y, w, h] (4 numbers)'
        if not is_number(score):
            return i, f'has score {score!r}, not a number'
        index.append(i)
        boxes.append(box[:4])
        scores.append(score)
    if not index:
        return None, f'has no person boxes (no entry with category_id 1 among its {len(entries)} entries)'
    # the finiteness of all boxes at once: about 4 µs per entry in all (BENCHMARKS.md)
    finite = np.isfinite(np.array(boxes, dtype=np.float64)).all(axis=1) & np.isfinite(np.array(scores, np.float64))
    if not finite.all():
        i = index[int(np.argmin(finite))]
        return i, f'has bbox {entries[i]["bbox"]} and score {entries[i]["score"]}: every value must be finite'
    return None


def detection_message(bbox_file: Any, entries: list, found: Tuple[Optional[int], str]) -> str:
    """:func:`detection_problem`'s finding as a sentence naming the file, and the entry (index and image id)
    where one is at fault."""
    index, what = found
    if index is None:
        return f'the detection file {bbox_file} {what}'
    det = entries[index]
    entry = f'entry {index} (image_id {det.get("image_id")!r})' if type(det) is dict else f'entry {index}'
    return f'the detection file {bbox_file}: {entry} {what}'


def image_size_table(images: Iterable[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """(N,) image ids, sorted, and their (N, 2) annotated (height, width); -1 where a size is no finite number
    (not compared, rather than failing the build without a name). Arrays, not a dict, so that forked dataloader
    workers do not copy the table page by page as they touch its reference counts."""
    sizes = sorted((img['id'], img.get('height', -1), img.get('width', -1)) for img in images
                   if is_number(img.get('id')) and math.isfinite(img['id']))
    table = np.array([size if all(is_number(v) and math.isfinite(v) for v in size) else (size[0], -1, -1)
                      for size in sizes], dtype=np.int64).reshape(-1, 3)
    return table[:, 0].copy(), table[:, 1:].copy()


def unusable_counts(instance_list: List[dict], num_annotations: int) -> Dict[str, int]:
    """Why no annotation was used, by mmpose's ``_is_valid_instance`` reason (the first that applies).

    ``instance_list`` holds the parsed instances, all dropped by mmpose's filter; of the ``num_annotations`` read,
    those not in it were skipped while parsing, for having no bbox or keypoints."""
    counts = {'without bbox or keypoints': num_annotations - len(instance_list), 'crowd': 0,
              'with num_keypoints 0': 0, 'with a zero-area box': 0, 'without a positive keypoint': 0}
    for info in instance_list:
        w, h = info['bbox'][0, 2:] - info['bbox'][0, :2]
        counts['crowd' if info.get('iscrowd') else 'with num_keypoints 0' if info['num_keypoints'] == 0 else
               'with a zero-area box' if w <= 0 or h <= 0 else 'without a positive keypoint'] += 1
    return counts

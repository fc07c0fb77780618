"""Writer of a small synthetic person-keypoint dataset in exactly COCO's layout and format.

It lets the whole pipeline (data loading, training, top-down evaluation with detector boxes) run anywhere in
seconds, with no download. The layout under ``root``::

    annotations/person_keypoints_train2017.json
    annotations/person_keypoints_val2017.json
    train2017/000000000001.jpg ...
    val2017/000001000001.jpg ...
    person_detection_results/COCO_val2017_detections_AP_H_56_person.json

Pure numpy/cv2/json (no mmpose import), deterministic for a seed: every image draws from its own generator
seeded by ``(seed, difficulty, split, index)``, so the same call writes the same bytes.
"""
import contextlib
import itertools
import json
import multiprocessing
import os
import os.path as osp
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from ..arguments import raise_problems, write_json
from ..locks import FolderInUse
from ..processes import die_with_parent
from .render import RenderedPerson, SceneParams, render_scene

# in the set's folder while write_synthetic_coco writes, and after a write cut short: no stamp is trusted then
# (synthetic_sets.stamped_data)
WRITING_MARKER = '.writing'
SET_MARKER = '.synthetic_set'  # written first and kept: the folder is a synthetic set's, whatever is left in it
COCO_KEYPOINT_NAMES: Tuple[str, ...] = (
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder', 'left_elbow',
    'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
    'right_ankle')
# COCO's own skeleton, 1-based keypoint indices as in person_keypoints_*.json.
COCO_SKELETON: Tuple[Tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10), (9, 11),
    (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
PERSON_CATEGORY: Dict = dict(supercategory='person', id=1, name='person', keypoints=list(COCO_KEYPOINT_NAMES),
                             skeleton=[list(e) for e in COCO_SKELETON])
# Val image ids start here so that they never collide with train ids, as in COCO.
VAL_ID_OFFSET = 1_000_000
DET_FILE = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'
# the annotation files' info.description starts so: what tells a set this module wrote from a user's own
DESCRIPTION = 'ipr_plugin synthetic COCO keypoints'
_SPLITS = {'train': (0, 0), 'val': (1, VAL_ID_OFFSET)}  # split: (generator stream, image id offset)
_DET_STREAM = 2  # generator stream of the detections, apart from the image streams
_MAX_TRIES = 20  # re-draws of a scene in which nobody ended up annotated
PARALLEL_MIN_IMAGES = 50  # write_synthetic_coco(workers=None) uses every core from this many images on
# Smallest image side: the background's clutter draws sizes from 5 px to a sixth of the image height.
MIN_IMAGE_SIDE = 36


class NotASyntheticSet(FolderInUse):
    """The folder holds files a set written there would replace or remove, and no synthetic set wrote them: a
    user's own data (a real COCO folder given as the set's, whose annotations went without a word)."""


@dataclass(frozen=True)
class DetParams:
    """Simulated person detector.

    Attributes:
        jitter: std of the box centre shift (fraction of the box size) and of the log of its size change.
        miss_prob: probability that a true person gets no box.
        dup_prob: probability of a second, worse and lower-scored box on a true person.
        false_positives_mean: Poisson mean of boxes on no one, per image, scored low.
    """
    jitter: float = 0.05
    miss_prob: float = 0.0
    dup_prob: float = 0.05
    false_positives_mean: float = 0.5


DIFFICULTIES: Dict[str, Tuple[SceneParams, DetParams]] = {
    'normal': (SceneParams(), DetParams()),
    'hard': (SceneParams(people_per_image=(2, 7), height_frac=(0.25, 1.0), small_prob=0.35, lean_std=0.3,
                         truncation_prob=0.4, occluders_mean=3.0, back_view_prob=0.15),
             DetParams(jitter=0.12, miss_prob=0.05, dup_prob=0.2, false_positives_mean=2.0)),
}


def image_file_name(image_id: int) -> str:
    """COCO's file name for an image id: 12 zero-padded digits."""
    return f'{image_id:012d}.jpg'


def _is_annotated(person: RenderedPerson) -> bool:
    # Someone with no labeled keypoint, or whose visible box would vanish under mmpose's clip to
    # [0, size - 1], would be filtered out by the loader anyway; leaving them out keeps counts exact.
    return person.bbox is not None and min(person.bbox[2:]) >= 2 and int(np.count_nonzero(person.visible)) > 0


def _render_annotated(rng: np.random.Generator, image_size: Tuple[int, int],
                      params: SceneParams) -> Tuple[np.ndarray, List[RenderedPerson]]:
    """Render scenes until one has at least one annotated person (almost always the first)."""
    for _ in range(_MAX_TRIES):
        image, people = render_scene(rng, image_size, params)
        annotated = [p for p in people if _is_annotated(p)]
        if annotated:
            return image, annotated
    raise RuntimeError(f'no annotated person in {_MAX_TRIES} scenes; scene parameters too harsh: {params}')


def _annotation(person: RenderedPerson, ann_id: int, image_id: int) -> Dict:
    """COCO annotation dict of a person; keypoints with v=0 are written as (0, 0, 0) as COCO does."""
    kpts = np.concatenate([person.keypoints, person.visible[:, None]], 1)
    kpts[person.visible == 0] = 0
    x, y, w, h = person.bbox
    segmentation = person.polygons or [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return dict(id=ann_id, image_id=image_id, category_id=1, segmentation=segmentation, area=float(person.area),
                bbox=[float(v) for v in person.bbox], iscrowd=0, keypoints=[int(v) for v in kpts.reshape(-1)],
                num_keypoints=int(np.count_nonzero(person.visible)))


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-6)


def _clip_xywh(box: np.ndarray, width: int, height: int) -> np.ndarray:
    x0, y0 = np.clip(box[:2], 0, [width - 1, height - 1])
    x1, y1 = np.clip(box[:2] + box[2:], [x0 + 1, y0 + 1], [width, height])
    return np.array([x0, y0, x1 - x0, y1 - y0])


def _detections(rng: np.random.Generator, image: Dict, anns: List[Dict], params: DetParams) -> List[Dict]:
    """Simulated detector output on one image, best score first.

    True boxes are jittered and scored by their IoU with the truth (so score tracks quality); false positives are
    person-shaped boxes anywhere, scored below most true ones.
    """
    width, height = image['width'], image['height']
    boxes: List[Tuple[np.ndarray, float]] = []
    for ann in anns:
        truth = np.array(ann['bbox'], dtype=np.float64)
        if rng.random() < params.miss_prob:
            continue
        for dup in range(2 if rng.random() < params.dup_prob else 1):  # a duplicate: looser, scored half
            jitter = params.jitter * (1 + dup)
            centre = truth[:2] + truth[2:] / 2 + rng.normal(0, jitter, 2) * truth[2:]
            size = truth[2:] * np.exp(rng.normal(0, jitter, 2))
            box = _clip_xywh(np.concatenate([centre - size / 2, size]), width, height)
            boxes.append((box, (0.25 + 0.75 * _iou_xywh(box, truth) + rng.normal(0, 0.04)) / (1 + dup)))
    for _ in range(int(rng.poisson(params.false_positives_mean))):
        w = rng.uniform(0.04, 0.35) * width
        h = w * rng.uniform(1.2, 3.0)
        box = _clip_xywh(np.array([rng.uniform(-0.1, 1) * width, rng.uniform(-0.1, 1) * height, w, h]), width,
                         height)
        boxes.append((box, rng.uniform(0.01, 0.35)))
    boxes.sort(key=lambda b: -b[1])
    return [dict(image_id=image['id'], category_id=1, bbox=[round(float(v), 2) for v in box],
                 score=round(float(np.clip(score, 0.01, 1.0)), 5)) for box, score in boxes]


def _write_json(obj, path: str) -> None:
    # Compact like COCO's own files; dict order is insertion order, so equal inputs give equal bytes.
    write_json(path, obj, separators=(',', ':'))


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in this thread, and so in the processes it forks: a rendering worker stopped
    in the middle of the pool's protocol (by Ctrl-C or ``timeout``, which signal the whole process group) could
    leave the pool's shutdown waiting forever. The workers end when the main process, which gets the signal,
    shuts the pool down."""
    stop = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _write_image(index: int, img_dir: str, stream_seed: Sequence[int], stream: int, id_offset: int,
                 image_size: Tuple[int, int], scene: SceneParams, jpeg_params: List[int]) -> List[RenderedPerson]:
    """Render image ``index`` of a split from its own generator, write its JPEG, return its people."""
    pixels, people = _render_annotated(np.random.default_rng([*stream_seed, stream, index]), image_size, scene)
    path = osp.join(img_dir, image_file_name(id_offset + index + 1))
    if not cv2.imwrite(path, pixels, jpeg_params):
        raise OSError(f'cv2 could not write {path}')
    return people


def argument_problems(num_train: int = 64, num_val: int = 16, image_size: Sequence[int] = (640, 480),
                      people_per_image: Optional[Sequence[int]] = None, jpeg_quality: int = 90,
                      workers: Optional[int] = 1) -> Dict[str, str]:
    """What is wrong with :func:`write_synthetic_coco`'s arguments, by argument name (empty when all is well).

    Checked up front: a negative count would silently write no image, and bad sizes or people ranges fail
    only inside numpy, naming neither.
    """
    def is_int(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    problems = {}
    for name, count in (('num_train', num_train), ('num_val', num_val)):
        if not is_int(count) or count < 0:
            problems[name] = f'must be a number of images >= 0, got {count!r}'
    if num_train == 0 and num_val == 0 and not problems:  # an empty set, which every reader of it then refuses
        problems['num_val'] = 'must be at least 1 where there are no train images (a set of no image)'
    if len(image_size) != 2 or not all(is_int(s) and s >= MIN_IMAGE_SIDE for s in image_size):
        problems['image_size'] = f'must be (width, height), both at least {MIN_IMAGE_SIDE} px, got {tuple(image_size)}'
    if people_per_image is not None:
        pair = tuple(people_per_image)
        if len(pair) != 2 or not all(is_int(n) for n in pair) or not 0 <= pair[0] <= pair[1] or pair[1] < 1:
            problems['people_per_image'] = f'must be (min, max) with 0 <= min <= max and max >= 1, got {pair}'
    if not is_int(jpeg_quality) or not 0 <= jpeg_quality <= 100:
        problems['jpeg_quality'] = f'must be in [0, 100], got {jpeg_quality!r}'
    if workers is not None and (not is_int(workers) or workers < 1):
        problems['workers'] = f'must be a number of processes >= 1, got {workers!r}'
    return problems


def write_synthetic_coco(root: str, num_train: int = 64, num_val: int = 16,
                         image_size: Tuple[int, int] = (640, 480),
                         people_per_image: Optional[Tuple[int, int]] = None, seed: int = 0,
                         difficulty: str = 'normal', jpeg_quality: int = 90, workers: Optional[int] = 1) -> Dict:
    """Write a synthetic COCO person-keypoint dataset (images, annotations, detector boxes) under ``root``.

    Args:
        root: dataset root; created if missing. A synthetic set there is written over: the earlier
            annotation and detection files are removed before the first image is written, and the images an
            earlier, larger synthetic set wrote past this one's counts are removed once it is written (only
            files of this module's names that the earlier set's annotation file lists; a set cut short has no
            annotation file left, and its extra images stay).
        num_train: number of train images (``train2017``).
        num_val: number of val images (``val2017``); the detections file covers these.
        image_size: (width, height) of every image, pixels.
        people_per_image: inclusive (min, max) people drawn per image; None takes the difficulty's (normal:
            (1, 4), hard: (2, 7)). Some may end up unannotated (hidden or out of the image), never all of them.
        seed: the dataset is a pure function of all the arguments.
        difficulty: 'normal', or 'hard' for more, smaller, more occluded and more truncated people and a
            worse detector (more jitter, misses, duplicates and false positives).
        jpeg_quality: JPEG quality 0-100. Chroma is kept at full resolution (4:4:4) so the joint discs keep
            their colours.
        workers: processes rendering images; ``None``: every core for sets of ``PARALLEL_MIN_IMAGES`` images or
            more, else 1 (starting the processes would cost more than a small set's rendering).
            Every image comes from its own generator and ids are assigned in image order afterwards, so the files
            are the same for any number.

    Returns:
        dict: ``root``; ``train_ann_file``, ``val_ann_file``, ``train_img_dir``, ``val_img_dir``, ``bbox_file``
        (absolute paths, links resolved); ``num_train_images``, ``num_val_images``, ``num_train_instances``,
        ``num_val_instances``, ``num_detections``.

    Raises:
        ValueError: a bad argument (see :func:`argument_problems`) or difficulty; nothing is written then.
        NotASyntheticSet: ``root`` holds an annotation or detection file, or an image of a name this set would
            write, that no synthetic set wrote (:func:`_foreign_file`); nothing is written then.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f'difficulty must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}')
    raise_problems(argument_problems(num_train, num_val, image_size, people_per_image, jpeg_quality, workers))
    scene, det = DIFFICULTIES[difficulty]
    if people_per_image is not None:
        scene = replace(scene, people_per_image=tuple(people_per_image))
    width, height = image_size
    root = osp.realpath(root)  # one name for a folder reached through links: a stamp compares it
    # The difficulty joins the seed, so that 'normal' and 'hard' sets of one seed share no backgrounds.
    stream_seed = [seed, list(DIFFICULTIES).index(difficulty)]
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality),
                   cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    out: Dict = dict(root=root)
    detections: List[Dict] = []
    earlier = _earlier_images(root)
    foreign = _foreign_file(root, earlier, dict(train=num_train, val=num_val))
    if foreign is not None:
        older = '' if foreign in [_ann_file(root, split) for split in _SPLITS] else (
            " (if it is a synthetic set an earlier version wrote, whose annotation files were deleted, delete that "
            "set's folder)")
        raise NotASyntheticSet(f'{root} holds {foreign}, which no synthetic set wrote: writing one there would '
                               f'replace or remove it; give the synthetic set a folder of its own{older}')
    os.makedirs(root, exist_ok=True)
    open(osp.join(root, SET_MARKER), 'w').close()
    writing = osp.join(root, WRITING_MARKER)
    open(writing, 'w').close()  # removed at the end: a write cut short leaves it
    # A write cut short over an earlier set left its annotation files describing the new images without a word
    # (training and check_data took them): they go first, so a cut-short set fails to load, naming the file.
    for old in (*(_ann_file(root, split) for split in _SPLITS), osp.join(root, DET_FILE)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(old)
    if workers is None:
        workers = (os.cpu_count() or 1) if num_train + num_val >= PARALLEL_MIN_IMAGES else 1
    # fork where there is one (as torch's DataLoader does): the children only render with numpy and cv2, and a
    # spawned child would first import this whole package (torch, mmpose), seconds per process
    method = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn'
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                initializer=die_with_parent, initargs=(os.getpid(),))
            if workers > 1 and num_train + num_val > 1 else None)
    try:
        for split, count in (('train', num_train), ('val', num_val)):
            stream, id_offset = _SPLITS[split]
            img_dir = osp.join(root, f'{split}2017')
            os.makedirs(img_dir, exist_ok=True)
            render = partial(_write_image, img_dir=img_dir, stream_seed=stream_seed, stream=stream,
                             id_offset=id_offset, image_size=image_size, scene=scene, jpeg_params=jpeg_params)
            # small chunks: an interrupted pool still renders every chunk already handed out before it stops
            with _stop_signals_blocked():  # the first map forks the workers, which keep the mask
                rendered = (pool.map(render, range(count), chunksize=max(1, min(8, count // (4 * workers))))
                            if pool is not None else map(render, range(count)))
            detections += _write_split(split, img_dir, rendered, (width, height), stream_seed, det,
                                       f'{DESCRIPTION} ({difficulty}, seed {seed})', out)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    out['bbox_file'] = osp.join(root, DET_FILE)
    _write_json(detections, out['bbox_file'])
    out['num_detections'] = len(detections)
    # a smaller set over a larger one left the larger one's images in the folders, unlisted: those this module
    # named itself (the earlier set's images past this one's count), and files only
    for split, names in earlier.items():
        offset, count = _SPLITS[split][1], out[f'num_{split}_images']
        for index in range(count, len(names)):
            name = image_file_name(offset + index + 1)
            path = osp.join(root, f'{split}2017', name)
            if name in names and osp.isfile(path) and not osp.islink(path):
                os.remove(path)
    os.remove(writing)
    return out


def _earlier_images(root: str) -> Dict[str, Set[str]]:
    """Per split, the image files the synthetic set already under ``root`` lists (none where its annotation file
    is missing, unreadable or not one this module wrote: a user's own images are never removed)."""
    listed = {split: _listed_images(_ann_file(root, split)) for split in _SPLITS}
    return {split: names for split, names in listed.items() if names is not None}


def _listed_images(ann_file: str) -> Optional[Set[str]]:
    """The image file names ``ann_file`` lists, or None where it is missing, unreadable or not this module's."""
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        if str(coco['info']['description']).startswith(DESCRIPTION):
            return {osp.basename(str(image['file_name'])) for image in coco['images']}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _foreign_file(root: str, earlier: Dict[str, Set[str]], counts: Dict[str, int]) -> Optional[str]:
    """A file under ``root`` that writing ``counts`` images per split would replace or remove although no
    synthetic set wrote it, or None. ``earlier``: :func:`_earlier_images` of ``root``.

    An annotation file not of this module's is one (but for a write cut short, which removed them first). Where
    neither annotation file is, so are the detection file and the images of this set's names, unless this module
    wrote to the folder before (its marker: a set whose annotation files were deleted since).
    """
    if osp.lexists(osp.join(root, WRITING_MARKER)):
        return None
    for split in _SPLITS:
        if split not in earlier and osp.lexists(_ann_file(root, split)):
            return _ann_file(root, split)
    if earlier or osp.lexists(osp.join(root, SET_MARKER)):
        return None
    images = (osp.join(root, f'{split}2017', image_file_name(_SPLITS[split][1] + index + 1))
              for split, count in counts.items() for index in range(count))
    return next((path for path in itertools.chain([osp.join(root, DET_FILE)], images) if osp.lexists(path)), None)


def _ann_file(root: str, split: str) -> str:
    return osp.join(root, 'annotations', f'person_keypoints_{split}2017.json')


def _write_split(split: str, img_dir: str, people_per_image: Iterable[List[RenderedPerson]],
                 image_size: Tuple[int, int], stream_seed: Sequence[int], det: DetParams, description: str,
                 out: Dict) -> List[Dict]:
    """Number one split's rendered people in image order and write its annotation file (its paths and counts go
    into ``out``); returns its detector boxes (val only)."""
    stream, id_offset = _SPLITS[split]
    width, height = image_size
    images: List[Dict] = []
    anns: List[Dict] = []
    detections: List[Dict] = []
    for index, people in enumerate(people_per_image):
        image_id = id_offset + index + 1
        image = dict(id=image_id, file_name=image_file_name(image_id), width=width, height=height)
        image_anns = [_annotation(p, id_offset + len(anns) + j + 1, image_id) for j, p in enumerate(people)]
        images.append(image)
        anns.extend(image_anns)
        if split == 'val':
            det_rng = np.random.default_rng([*stream_seed, _DET_STREAM, index])
            detections += _detections(det_rng, image, image_anns, det)
    ann_file = _ann_file(out['root'], split)
    _write_json(dict(info=dict(description=description, version='1.0', year=2017), licenses=[], images=images,
                     annotations=anns, categories=[PERSON_CATEGORY]), ann_file)
    out.update({f'{split}_ann_file': ann_file, f'{split}_img_dir': img_dir, f'num_{split}_images': len(images),
                f'num_{split}_instances': len(anns)})
    return detections

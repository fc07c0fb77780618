"""Check a config's data before a long run: every dataset it builds, and every image as its pipeline loads it.

Training stops at the first bad sample a dataloader worker meets: a missing or undecodable image, or (with
``IPRCocoDataset``) an image whose size differs from the annotation file's. :func:`check_data` finds all of them
at once: it builds each split's dataset as the Runner would (``IPRCocoDataset``'s path, annotation and detection
checks run then), then loads every image of it once with the split's own loading transform (the first transform
named ``*LoadImage`` in the dataset's pipeline, or in that of a wrapper around it such as mmpose's
``CombinedDataset``), in ``workers`` processes, and compares the loaded size with the annotation file's, whatever
the dataset's ``check_image_size`` says. An image whose loading kills the worker process (the out-of-memory
killer, a crash inside a decoder) is one problem on the list, not the end of the check. A JPEG that the loader
turns by its EXIF orientation as it decodes (OpenCV does, unless ``color_type`` says ``ignore_orientation``) is a
note, not a problem: the annotation file cannot say whether its keypoints were made on the turned pixels.
"""
import multiprocessing
import os
import os.path as osp
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..arguments import is_url
from ..datasets.transforms.jpeg import ORIENTATION_TURNS, file_orientation
from ..paths import ConfigLike, link_note, load_config
from ..progress import progress_bar

SPLITS = ('train', 'val', 'test')

_loader = None  # the loading transform of a worker process (set by _init_worker)


@dataclass
class DataProblem:
    """One thing that would stop or spoil a run: ``split`` (train, val, test), ``what`` (an image path, or
    ``dataset`` for one that could not be built) and ``message`` (the error, naming the culprit)."""
    split: str
    what: str
    message: str


def check_data(config: ConfigLike, splits: Sequence[str] = SPLITS, workers: int = 0,
               cfg_options: Optional[dict] = None, progress: bool = True) -> Dict[str, Any]:
    """Build each split's dataset of ``config`` and load each of its images once.

    Args:
        config: a config file, ``package::path`` name or ``Config``.
        splits: which of ``train``, ``val``, ``test`` to check; a split without a dataloader in the config, or
            with the same dataset as a split checked before it (mmpose's ``test_dataloader = val_dataloader``),
            is skipped and listed under ``skipped``; when none of them has a dataloader, nothing is checked and
            an error is raised.
        workers: processes loading images (0: this process).
        cfg_options: config overrides, as ``--cfg-options`` gives them.
        progress: show a progress bar per split on stderr.

    Returns:
        dict: ``problems`` (list of :class:`DataProblem`), ``notes`` (the same, for images worth a look that
        need not be wrong: EXIF-turned ones), and per split checked, under ``splits``: its dataset class,
        ``samples``, ``images`` checked (the problems among them listed), ``seconds``, and ``sizes_compared``
        (whether the dataset knows the annotation's image sizes: ``IPRCocoDataset`` does, mmpose's
        ``CocoDataset`` does not);
        ``skipped``: split -> why.

    Raises:
        FileNotFoundError: the config is missing.
        ValueError: none of ``splits`` has a dataloader with a dataset in the config (a file that is no config of
            a dataset, such as an annotation file, loads as a config without any).
    """
    from mmengine.registry import init_default_scope
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpose'))
    problems: List[DataProblem] = []
    notes: List[DataProblem] = []
    report: Dict[str, Any] = dict(problems=problems, notes=notes, splits={}, skipped={})
    if not any((cfg.get(f'{split}_dataloader') or {}).get('dataset') for split in splits):
        # else the report would be "0 problems" for a file that is no training config at all (an annotation file)
        name = config if isinstance(config, (str, os.PathLike)) else cfg.filename
        asked = 'is it a config of a model\'s data?' if set(splits) == set(SPLITS) else \
            f'only {", ".join(splits)} asked for'
        raise ValueError(f'check_data: {name} has nothing to check: no '
                         f'{" or ".join(f"{split}_dataloader" for split in splits)} with a dataset in it ({asked})')
    seen: List[Tuple[str, Any]] = []
    for split in splits:
        loader_cfg = cfg.get(f'{split}_dataloader')
        if not loader_cfg or not loader_cfg.get('dataset'):
            report['skipped'][split] = 'no dataloader in the config'
            continue
        same = next((name for name, dataset_cfg in seen if dataset_cfg == loader_cfg.dataset), None)
        if same:
            report['skipped'][split] = f'the same dataset as {same}'
            continue
        seen.append((split, loader_cfg.dataset))
        report['splits'][split] = _check_split(split, loader_cfg.dataset, workers, progress, problems, notes)
    return report


def data_files(config: ConfigLike, cfg_options: Optional[dict] = None) -> List[str]:
    """The files other than images that ``config``'s data and evaluators read (annotation and detection files),
    each as given and joined to its dataset's ``data_root``: what a report written beside them must not replace.

    Raises:
        FileNotFoundError: the config is missing.
    """
    cfg = load_config(config, cfg_options)
    files: List[str] = []

    def walk(node: Any, root: str) -> None:
        if isinstance(node, dict):
            root = node.get('data_root') or root
            for value in (node.get('ann_file'), node.get('bbox_file')):
                if isinstance(value, str) and value:
                    files.append(value)
                    if root and not osp.isabs(value) and not is_url(value):
                        files.append(osp.join(root, value))
            for value in node.values():
                walk(value, root)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value, root)

    for key in (*(f'{split}_dataloader' for split in SPLITS), 'val_evaluator', 'test_evaluator'):
        walk(cfg.get(key), '')
    return files


def _check_split(split: str, dataset_cfg, workers: int, progress: bool, problems: List[DataProblem],
                 notes: List[DataProblem]) -> dict:
    from mmpose.registry import DATASETS
    start = time.perf_counter()
    try:
        dataset = DATASETS.build(dataset_cfg)
        dataset.full_init()
    except Exception as error:  # noqa: BLE001 - reported with the others, not raised
        problems.append(DataProblem(split, 'dataset', f'{type(error).__name__}: {error}'))
        kind = dataset_cfg.get('type')  # a class in mmengine's Python-style configs
        return dict(dataset=getattr(kind, '__name__', kind), built=False, seconds=time.perf_counter() - start)
    leaves = list(_leaves(dataset))
    loaders = [loader for _, loader in leaves if loader is not None]
    result = dict(dataset=type(dataset).__name__, built=True, samples=len(dataset), images=0,
                  loader=type(loaders[0]).__name__ if loaders else None,
                  sizes_compared=all(hasattr(leaf, 'image_size_problem') for leaf, _ in leaves))
    for leaf, loader in leaves:
        if loader is None:
            continue
        images = _images(leaf)
        size_problem = getattr(leaf, 'image_size_problem', None)
        bar = progress_bar(total=len(images), desc=f'{split} images', unit='img', disable=not progress)
        found, turned = [], []
        for index, (img_id, path, shape, error, orientation) in _load_all(loader, images, workers):
            message = error or (size_problem(img_id, shape, path) if size_problem else None)
            if message:
                found.append((index, DataProblem(split, path, message)))
            elif orientation in ORIENTATION_TURNS:
                turned.append((index, DataProblem(split, path, _turn_note(path, orientation, loader))))
            result['images'] += 1
            bar.update()
        bar.close()
        problems += [problem for _, problem in sorted(found, key=lambda item: item[0])]  # in sample order
        notes += [note for _, note in sorted(turned, key=lambda item: item[0])]
    result['seconds'] = time.perf_counter() - start
    return result


def _leaves(dataset, loader=None) -> Iterator[tuple]:
    """(dataset, its loading transform or None) for each dataset under wrappers (``RepeatDataset``,
    ``ConcatDataset``, mmpose's ``CombinedDataset``, whose own pipeline loads the images of its parts)."""
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', None) or []
    loader = next((t for t in transforms if type(t).__name__.endswith('LoadImage')), loader)
    children = getattr(dataset, 'datasets', None)
    if children is None and getattr(dataset, 'dataset', None) is not None:
        children = [dataset.dataset]
    if not children:
        yield dataset, loader
        return
    for child in children:
        yield from _leaves(child, loader)


def _images(dataset) -> List[Tuple[Any, str]]:
    """(img_id, img_path) of each image of ``dataset``'s samples, once each, in sample order."""
    images: Dict[str, Any] = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        images.setdefault(info['img_path'], info.get('img_id'))
    return [(img_id, path) for path, img_id in images.items()]


def _load_all(loader, images: List[Tuple[Any, str]], workers: int) -> Iterator[tuple]:
    """(index into ``images``, :func:`_load_one`'s result) for every image, in the order they finish.

    A worker process that dies (the out-of-memory killer, a crash inside a decoder) costs only the image it was
    loading: that one is reported as the culprit, and the rest of its share goes to a new worker. With
    ``workers=0`` such a crash ends this process instead.
    """
    if workers <= 0:
        _init_worker(loader)
        yield from ((index, _load_one(image)) for index, image in enumerate(images))
        return
    context = multiprocessing.get_context('fork')  # workers inherit the transform, registries and default scope
    todo = deque(enumerate(images))
    pool = [_Worker(context, loader) for _ in range(min(workers, len(images)))]
    try:
        for worker in pool:
            worker.feed(todo)
        while todo or any(worker.pending for worker in pool):
            ready = set(wait([w.conn for w in pool] + [w.process.sentinel for w in pool]))
            for k, worker in enumerate(pool):
                if worker.conn in ready:
                    yield from worker.drain()
                if not worker.process.is_alive():  # also one killed while idle: its share must not be lost
                    yield from worker.drain()  # it has exited, so all it sent is in the pipe now
                    if worker.pending:
                        index, (img_id, path) = worker.pending.popleft()
                        yield index, (img_id, path, None, _death_message(worker.process.exitcode, path), 1)
                        todo.extendleft(reversed(worker.pending))
                    worker.close()
                    pool[k] = worker = _Worker(context, loader)
                worker.feed(todo)
    finally:
        for worker in pool:
            worker.close()


class _Worker:
    """A forked process that loads the images it is sent, over a pipe of its own: with no queue lock shared
    between workers, one killed mid-message cannot block the others."""
    CHUNK = 16  # images per message: few round trips, and little to resend after a death

    def __init__(self, context, loader):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.conn, loader), daemon=True)
        self.process.start()
        child.close()
        self.pending: deque = deque()  # (index, image) sent and not answered yet, in the order sent

    def feed(self, todo: deque) -> None:
        """Keep up to two chunks in flight, so that the worker never waits for the next one."""
        while todo and len(self.pending) <= self.CHUNK and self.process.is_alive():
            chunk = [todo.popleft() for _ in range(min(self.CHUNK, len(todo)))]
            self.pending.extend(chunk)
            try:
                self.conn.send(chunk)
            except OSError:  # it died just now: the caller requeues its pending images when it sees the exit
                return

    def drain(self) -> Iterator[tuple]:
        try:
            while self.conn.poll():
                answer = self.conn.recv()
                self.pending.popleft()
                yield answer
        except (EOFError, OSError):  # the worker is gone; the caller sees its exit code
            pass

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self.conn.close()


def _serve(conn, parent_end, loader) -> None:
    # Ctrl-C and `timeout` signal the whole process group: the checking process stops the workers itself (and a
    # worker's own traceback would bury its one-line message)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # a forked child holds a copy of the checking process's end of its pipe, which would keep recv() below from
    # ever seeing the end of a checking process killed without closing its workers
    parent_end.close()
    _init_worker(loader)
    while True:
        try:
            chunk = conn.recv()
        except EOFError:  # the checking process is gone
            return
        if chunk is None:
            return
        for index, image in chunk:
            conn.send((index, _load_one(image)))


def _death_message(exitcode: Optional[int], path: str) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:  # a real-time signal, which Python does not name
            name = f'signal {-exitcode}'
        likely = dict(SIGKILL='the out-of-memory killer sends it', SIGSEGV='a crash inside the image decoder')
        how = f'was killed by {name}' + (f' ({likely[name]}?)' if name in likely else '')
    else:
        how = f'exited with status {exitcode}'
    return (f'the process loading {path} {how}; if the image is the cause, a dataloader worker will die on it '
            'the same way and stop the run')


def _init_worker(loader) -> None:
    global _loader
    _loader = loader


def _load_one(image: Tuple[Any, str]) -> tuple:
    """(img_id, path, loaded (height, width) or None, error message or None, the EXIF orientation the loader
    applied: 1 when none)."""
    img_id, path = image
    try:
        # outside a dataset even IPRLoadImage(decode_region=True) decodes the whole file: all of it is checked
        results = _loader(dict(img_path=path, img_id=img_id))
    except Exception as error:  # noqa: BLE001 - every failure is a problem of this image
        return img_id, path, None, load_error_message(path, error), 1
    if results is None or 'img' not in results:
        return img_id, path, None, f'{type(_loader).__name__} loaded nothing from {path}', 1
    return img_id, path, tuple(results['img'].shape[:2]), None, file_orientation(path) if _turns(_loader) else 1


def load_error_message(path: str, error: Exception) -> str:
    """What is wrong with the image ``path`` that a loading transform failed on with ``error``.

    mmpose's ``LoadImage`` rewrites every failure as "... occurs when loading PATH. Please check whether the file
    exists", a file that is there but cannot be decoded included: for a local file, say which it is.
    """
    if not is_url(path):
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return f'{path} does not exist{link_note(path)}'
        except OSError as stat_error:  # e.g. a folder on the way that this user may not enter
            return f'{path} cannot be read ({stat_error.strerror})'
        if size == 0:
            return f'{path} is empty (0 bytes)'
        if 'failed to load image' in str(error):  # mmcv's imfrombytes: the decoder returned nothing
            return f'{path} ({size} bytes) cannot be decoded as an image'
    return f'{type(error).__name__}: {error}'


def _turns(loader) -> bool:
    """Whether ``loader`` applies EXIF orientations: mmcv's cv2 and pillow decoders do for ``color`` and
    ``grayscale`` (turbojpeg and tifffile never do)."""
    return (getattr(loader, 'color_type', 'color') in ('color', 'grayscale')
            and getattr(loader, 'imdecode_backend', 'cv2') in ('cv2', 'pillow'))


def _turn_note(path: str, orientation: int, loader) -> str:
    return (f'{type(loader).__name__} loads {path} {ORIENTATION_TURNS[orientation]}, as its EXIF orientation '
            f'{orientation} says; check that its keypoints were annotated on the image so turned, or load the '
            "stored pixels with color_type='color_ignore_orientation'")


def format_report(report: Dict[str, Any], max_listed: Optional[int] = None) -> str:
    """The report of :func:`check_data` as lines a person reads: one per split, then one per problem.

    ``max_listed``: at most this many problems (and notes) listed per split, then how many more: a folder
    resized as a whole makes every image a problem, and 118k near-identical lines hide the point.
    """
    lines = []
    for split, r in report['splits'].items():
        if not r['built']:
            lines.append(f'{split}: {r["dataset"]} could not be built ({r["seconds"]:.1f} s)')
            continue
        if not r['loader']:
            note = '; images not checked: no loading transform (*LoadImage) in its pipeline'
        elif not r['sizes_compared']:
            note = f"; sizes not compared ({r['dataset']} does not keep the annotation file's image sizes)"
        else:
            note = ''
        lines.append(f'{split}: {r["dataset"]}, {r["samples"]} samples, {r["images"]} images checked with '
                     f'{r["loader"]} in {r["seconds"]:.1f} s{note}')
    lines += [f'{split}: skipped, {why}' for split, why in report['skipped'].items()]
    problems, notes = report['problems'], report.get('notes', [])
    lines.append(f'{len(problems)} problem{"s" if len(problems) != 1 else ""}' + (':' if problems else ''))
    lines += _listed([f'- {p.split}: {p.message}' if p.what in p.message else f'- {p.split}: {p.what}: {p.message}'
                      for p in problems], [p.split for p in problems], max_listed, 'problems')
    if notes:
        lines.append(f'{len(notes)} note{"s" if len(notes) != 1 else ""} (worth a look, not counted as problems):')
        lines += _listed([f'- {n.split}: {n.message}' for n in notes], [n.split for n in notes], max_listed, 'notes')
    return '\n'.join(lines)


def _listed(lines: List[str], splits: List[str], most: Optional[int], what: str) -> List[str]:
    """``lines`` (in split order), at most ``most`` of each split's, each split's followed by how many more."""
    if not most:
        return lines
    groups: Dict[str, List[str]] = {}
    for line, split in zip(lines, splits):
        groups.setdefault(split, []).append(line)
    shown = []
    for split, group in groups.items():
        shown += group[:most]
        if len(group) > most:
            shown.append(f'- {split}: {len(group) - most} more {what}, not listed')
    return shown


def report_json(report: Dict[str, Any]) -> Dict[str, Any]:
    """The report with its problems as plain dicts, for ``json.dump``."""
    return dict(report, problems=[asdict(p) for p in report['problems']],
                notes=[asdict(n) for n in report.get('notes', [])])

"""The measurements of one (already overridden) config, (a)-(g) of the report, each returning a JSON-able dict."""
import contextlib
import copy
import gc
import io
import random
import re
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import FUNCTIONS, init_default_scope
from mmengine.runner import Runner
from mmengine.utils.dl_utils import set_multi_processing

from .overrides import eval_only, leaf_dataset, train_only
from .timing import GpuUtilSampler, WindowTimerHook, batch_len, host_rss_mib, with_host_peak

MIB = 2**20


def measure_train(cfg, warmup: int, iters: int, device: str) -> Dict[str, Any]:
    """(a) End-to-end training through ``Runner.from_cfg(cfg)``: img/s over the window of
    :class:`WindowTimerHook`, peak GPU memory of the whole run, mean GPU utilisation in the window."""
    cuda = device == 'cuda'
    sampler = GpuUtilSampler() if cuda else None
    hook = WindowTimerHook('train', warmup, iters, cuda, on_start=sampler and sampler.start,
                           on_stop=sampler and sampler.stop)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = _run_window(train_only(cfg), hook, train=True, on_exit=sampler and sampler.stop)
    if cuda:  # the peak of the whole run, which freeing the Runner does not reset
        result['peak_mem_mib'] = torch.cuda.max_memory_allocated() / MIB
        result['gpu_util'] = sampler.result()
    return result


def measure_eval(cfg, warmup: int, iters: int, device: str) -> Dict[str, Any]:
    """(c) Evaluation with flip test through ``runner.val()``: the config's own ValLoop (its ``fp16``, its
    hooks) with CocoMetric. The window covers the model's ``val_step`` and the metric's per-batch ``process``;
    the metric's final COCO evaluation runs after it."""
    hook = WindowTimerHook('val', warmup, iters, device == 'cuda')
    return _run_window(eval_only(cfg), hook, train=False)


def _run_window(cfg, hook: WindowTimerHook, train: bool,
                on_exit: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Run a Runner built from ``cfg`` with ``hook`` through its train loop (``train``) or its val loop, then
    stop its loader workers and free it; ``on_exit`` runs however the loop ends.

    Returns ``hook``'s window result with ``phases_s``: where the wall time went outside the window (seconds):
    building the Runner, from the loop's start to the window (loader workers starting, first steps), from the
    window's end to the loop's return (for eval: the rest of the val set and the COCO evaluation), and freeing
    it (loader workers ending).
    """
    t0 = time.perf_counter()
    if cfg.get('visualizer') is not None:  # mmengine keeps one visualizer per name and process, and warns at the next
        cfg.visualizer.name = f"{cfg.visualizer.get('name', 'visualizer')}_{'train' if train else 'val'}"
    runner = Runner.from_cfg(cfg)
    runner.register_hook(hook)
    t_built = time.perf_counter()
    try:
        runner.train() if train else runner.val()
    finally:
        if on_exit is not None:
            on_exit()
    t_ran = time.perf_counter()
    result = hook.result()
    if train:
        _stop_workers(runner.train_loop.dataloader, runner.train_loop.dataloader_iterator._iterator)
    else:
        _stop_workers(runner.val_loop.dataloader)
    del runner
    _free_memory()
    result['phases_s'] = dict(build=t_built - t0, to_window=hook.t_start - t_built,
                              after_window=t_ran - hook.t_stop, teardown=time.perf_counter() - t_ran)
    return result


def measure_loader(cfg, warmup: int, iters: int, seed: int) -> Dict[str, Any]:
    """(b) The train dataloader alone (``Runner.build_dataloader(cfg.train_dataloader)``, the process set up
    as the Runner sets it up): samples/s over ``iters`` batches after ``warmup`` batches."""
    init_default_scope(cfg.get('default_scope', 'mmpose'))
    set_multi_processing(**cfg.get('env_cfg', {}).get('mp_cfg', {}), distributed=False)
    loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=seed)
    batches = _endless(loader)
    for _ in range(warmup):
        next(batches)
    samples = 0
    start = time.perf_counter()
    for _ in range(iters):
        samples += batch_len(next(batches))
    elapsed = time.perf_counter() - start
    del batches, loader  # shuts the persistent workers down before the next measurement
    _free_memory()
    return dict(per_s=samples / elapsed, samples=samples, iters=iters, elapsed_s=elapsed)


def measure_pipeline(cfg, num_samples: int, batch_size: int, seed: int,
                     loader_key: str = 'train_dataloader') -> Dict[str, Any]:
    """(d) Per-sample CPU cost of the train pipeline (``loader_key='val_dataloader'``: (e), the test pipeline),
    in this process on one thread: ms/sample of the dataset's ``get_data_info``, of every transform of the
    loader's ``dataset.pipeline`` (built with mmpose's ``TRANSFORMS``) and of the loader's ``collate_fn`` (per
    sample, over batches of ``batch_size``), all of which a dataloader worker pays per sample. Samples are
    taken in dataset order, as a worker of an unshuffled loader receives them (for a test set: the detector
    boxes of one image one after another). A few untimed samples go first."""
    from mmpose.registry import DATASETS, TRANSFORMS

    from ..datasets.transforms.load_image import deferred_decode_problem
    init_default_scope(cfg.get('default_scope', 'mmpose'))
    loader_cfg = cfg[loader_key]
    dataset_cfg = copy.deepcopy(loader_cfg.dataset)
    pipeline_cfg = dataset_cfg.pop('pipeline')
    dataset = DATASETS.build(dict(dataset_cfg, pipeline=[]))
    steps: List[tuple] = [('get_data_info (dataset)', None)]
    steps += _unique_names([(type(t).__name__, t) for t in (TRANSFORMS.build(c) for c in pipeline_cfg)])
    transforms = [t for _, t in steps if t is not None]
    # the loader would refuse such a pipeline at the first sample too; this error names the config key
    problem = deferred_decode_problem(transforms)
    if problem:
        raise ValueError(f'{loader_key}.dataset.pipeline: {problem}')
    # built without it (its steps are timed one by one here), but a loader deferring its decoding looks for itself
    # in the pipeline of the sample's dataset and decodes whole images where it is not there
    dataset.pipeline = Compose(transforms)
    collate = _collate_fn(loader_cfg)
    totals: Dict[str, float] = OrderedDict((name, 0.0) for name, _ in steps)
    totals['collate (per sample)'] = 0.0
    warmup = min(4, num_samples)
    with _single_thread():
        random.seed(seed)
        np.random.seed(seed)
        batch: List[dict] = []
        for i in range(warmup + num_samples):
            timed = i >= warmup
            results = None
            for name, transform in steps:
                start = time.perf_counter()
                if transform is None:
                    results = dataset.get_data_info(i % len(dataset))
                    results['dataset'] = dataset  # as BaseCocoStyleDataset.prepare_data
                else:
                    results = transform(results)
                if timed:
                    totals[name] += time.perf_counter() - start
            if timed:
                batch.append(results)
            if len(batch) == batch_size or (batch and i == warmup + num_samples - 1):
                start = time.perf_counter()
                collate(batch)
                totals['collate (per sample)'] += time.perf_counter() - start
                batch = []
    per_sample = OrderedDict((name, 1000 * t / num_samples) for name, t in totals.items())
    return dict(ms_per_sample=sum(per_sample.values()), steps=per_sample, samples=num_samples)


def measure_host(cfg, batch_size: int, device: str, seed: int, repeats: int = 5) -> Dict[str, Any]:
    """(f) Main-process cost of a batch's data samples: ms/sample for the config's data preprocessor to move the
    ``data_samples`` of one collated train batch and one val batch to ``device`` (its ``cast_data``, the step
    that copies every sample's metainfo in mmengine). The main process pays it for every batch, serialised with
    the GPU's work wherever a step waits for its inputs. Batches come from the datasets' own pipelines and the
    loaders' own ``collate_fn``; the best of ``repeats`` timings is taken, on one thread.

    Also ``val_post_ms_per_sample``: the main process's work on an evaluation batch's predictions once the
    network has run, i.e. the pose estimator's ``add_pred_to_datasample`` (keypoints back to image space) and
    the evaluator's per-batch ``process``, timed on the config's own model, metric and val batch (the head's
    input features are random, as the values do not change the cost)."""
    from mmpose.registry import DATASETS, MODELS
    init_default_scope(cfg.get('default_scope', 'mmpose'))
    model = MODELS.build(copy.deepcopy(cfg.model)).to(device).eval()
    result: Dict[str, Any] = dict(batch_size=batch_size, repeats=repeats)
    with _single_thread(), torch.no_grad():
        batches = {}
        for split in ('train', 'val'):
            loader_cfg = cfg[f'{split}_dataloader']
            dataset = DATASETS.build(copy.deepcopy(loader_cfg.dataset))
            random.seed(seed)
            np.random.seed(seed)
            count = min(batch_size, len(dataset))
            batch = _collate_fn(loader_cfg)([dataset[i] for i in range(count)])
            samples = batch['data_samples']
            result[f'{split}_ms_per_sample'] = _best_ms(lambda: model.data_preprocessor.cast_data(samples),
                                                        repeats) / count
            batches[split] = (batch, dataset.metainfo)
        val_batch, val_meta = batches['val']
        result['val_post_ms_per_sample'] = (_val_post_ms(cfg, model, val_batch, val_meta, repeats)
                                            / len(val_batch['data_samples']))
    return result


def measure_metric(cfg, num_images: int, work_dir: str, seed: int) -> Dict[str, Any]:
    """(g) The final COCO evaluation: seconds for the config's val evaluator (its ``compute_metrics``: scoring,
    OKS NMS, COCOeval) on predictions for ``num_images`` images with COCO val2017's ~21 detector boxes each
    (:func:`~ipr_plugin.benchmark.coco_scale.write_coco_scale_set`), after its per-batch ``process`` (timed on
    its own: (f) times it per batch). mmengine runs this once per evaluation, in the main process, after the
    last batch. Also:

    - ``peak_mib``: the most host memory the evaluation took above what the process held before it;
    - ``again_s``, ``kept_mib``, ``ap_again``: the same evaluation made again, as each validation of a run makes
      it, and the host memory the process holds after it beyond what it held after the first;
    - ``dataset_s``: building the config's val dataset class from that annotation file and its detection file
      (what a test run does before its first batch); for a dataset that checks its inputs first, those checks
      timed one by one (``dataset_checks_s``, see :func:`_dataset_checks_s`);
    - ``train_dataset_s``, ``train_dataset_peak_mib``: building the config's train dataset class from a
      ground-truth file of COCO train2017's size scaled as ``num_images`` scales val2017 (what every training
      does before its first batch), and the host memory it takes.
    """
    from .coco_scale import train_images_for
    init_default_scope(cfg.get('default_scope', 'mmpose'))
    train_images = train_images_for(num_images)
    # one after the other, each in a function of its own: the first's objects are gone when the second starts
    result = _final_evaluation(cfg, num_images, work_dir, seed)
    try:
        result.update(_train_dataset(cfg, train_images, work_dir, seed))
    except Exception as error:  # noqa: BLE001 - e.g. a wrapper of several datasets: the evaluation's figures stand
        result['train_dataset_error'] = f'{type(error).__name__}: {error}'
    return result


def _final_evaluation(cfg, num_images: int, work_dir: str, seed: int) -> Dict[str, Any]:
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.registry import DATASETS, METRICS

    from .coco_scale import write_coco_scale_set
    ann_file, det_file, samples = write_coco_scale_set(work_dir, num_images=num_images, seed=seed)
    dataset_type = cfg.val_dataloader.dataset.type
    start = time.perf_counter()
    dataset = DATASETS.build(dict(type=dataset_type, ann_file=ann_file, bbox_file=det_file, data_root=work_dir,
                                  data_prefix=dict(img=''), data_mode='topdown', test_mode=True, pipeline=[]))
    dataset_s = time.perf_counter() - start
    checks_s = _dataset_checks_s(dataset)
    metric = METRICS.build(dict(copy.deepcopy(cfg.val_evaluator), ann_file=ann_file))
    metric.dataset_meta = parse_pose_metainfo(DATASETS.get(dataset_type).METAINFO)
    again = copy.deepcopy(samples)  # a metric may edit what it is given
    (process_s, compute_s, stats, printed), peak_mib = with_host_peak(lambda: _evaluate(metric, samples))
    held_mib = host_rss_mib()
    _, again_s, stats_again, _ = _evaluate(metric, again)
    kept_mib = host_rss_mib()
    return dict(metric=type(metric).__name__, images=num_images, instances=len(samples), process_s=process_s,
                compute_s=compute_s, per_s=len(samples) / compute_s, ap=stats.get('AP'), peak_mib=peak_mib,
                again_s=again_s, ap_again=stats_again.get('AP'),
                kept_mib=None if held_mib is None else kept_mib - held_mib,
                # xtcocotools prints its steps' times: taking the results in, evaluating per image, accumulating
                cocoeval_s=dict(zip(('load results', 'evaluate', 'accumulate'),
                                    map(float, re.findall(r'DONE \(t=([\d.]+)s\)', printed)[-3:]))),
                dataset=dataset_type, dataset_s=dataset_s, dataset_len=len(dataset), dataset_checks_s=checks_s)


def _train_dataset(cfg, num_images: int, work_dir: str, seed: int) -> Dict[str, Any]:
    from mmpose.registry import DATASETS

    from .coco_scale import write_coco_scale_set
    train_file = write_coco_scale_set(work_dir, num_images=num_images, boxes_per_image=0, seed=seed + 1,
                                      name='coco_scale_train')[0]
    dataset_type = leaf_dataset(cfg.train_dataloader.dataset).type  # the one inside RepeatDataset and the like

    def build() -> Tuple[int, float]:  # timed inside: not the garbage collection with_host_peak starts with
        start = time.perf_counter()
        dataset = DATASETS.build(dict(type=dataset_type, ann_file=train_file, data_root=work_dir,
                                      data_prefix=dict(img=''), data_mode='topdown', pipeline=[]))
        return len(dataset), time.perf_counter() - start

    (size, seconds), peak_mib = with_host_peak(build)
    return dict(train_dataset_s=seconds, train_images=num_images, train_dataset_len=size,
                train_dataset_peak_mib=peak_mib)


def _evaluate(metric, samples: List[dict]) -> Tuple[float, float, Dict[str, float], str]:
    """One evaluation as mmengine's ``Evaluator`` makes it: ``process`` on the predictions, then
    ``compute_metrics``. Returns the seconds of each, the metrics and what xtcocotools printed."""
    start = time.perf_counter()
    metric.process([], samples)
    processed = time.perf_counter()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        stats = metric.compute_metrics(metric.results)
    elapsed = time.perf_counter() - processed
    metric.results.clear()
    return processed - start, elapsed, stats, printed.getvalue()


def _dataset_checks_s(dataset) -> Dict[str, float]:
    """Seconds for each of :class:`~ipr_plugin.datasets.IPRCocoDataset`'s detection-file checks, run once more
    on the built dataset (they only read), as its loading runs them; empty for a dataset without them. What
    the build costs beyond mmpose's own loading, which reads both files again."""
    seconds: Dict[str, float] = {}
    if hasattr(dataset, '_check_detection_inputs'):
        dataset._check_detection_inputs(seconds)
    return seconds


def _val_post_ms(cfg, model, batch: dict, dataset_meta: dict, repeats: int) -> float:
    # Predictions as the head makes them (flip test included when configured), from random features of the
    # backbone's output shape, then the timed part: ms for the batch's predictions to reach the metric.
    from mmengine.evaluator import Evaluator
    data = model.data_preprocessor(batch, False)
    inputs, samples = data['inputs'], data['data_samples']
    shapes = [f.shape[1:] for f in model.extract_feat(inputs[:1])]
    flip = model.test_cfg.get('flip_test', False)
    feats = [tuple(torch.randn(len(samples), *shape, device=inputs.device) for shape in shapes)
             for _ in range(2 if flip else 1)]
    preds = model.head.predict(feats if flip else feats[0], samples, test_cfg=model.test_cfg)
    evaluator = Evaluator(copy.deepcopy(cfg.val_evaluator))
    evaluator.dataset_meta = dataset_meta
    copies = iter([copy.deepcopy(preds) for _ in range(repeats)])  # add_pred_to_datasample edits them in place

    def post() -> None:
        outputs = model.add_pred_to_datasample(next(copies), None, samples)
        evaluator.process(data_samples=outputs, data_batch=batch)

    return _best_ms(post, repeats)


def _best_ms(fn: Callable[[], Any], repeats: int) -> float:
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def _unique_names(steps: List[tuple]) -> List[tuple]:
    # A transform used twice gets '#2' so that both keep their own row.
    seen: Dict[str, int] = {}
    out = []
    for name, transform in steps:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f'{name}#{seen[name]}', transform))
    return out


def _collate_fn(loader_cfg) -> Callable:
    # As Runner.build_dataloader resolves it.
    collate_cfg = copy.deepcopy(loader_cfg.get('collate_fn') or dict(type='pseudo_collate'))
    collate_type = collate_cfg.pop('type')
    fn = FUNCTIONS.get(collate_type) if isinstance(collate_type, str) else collate_type
    if fn is None:
        return pseudo_collate
    return lambda batch: fn(batch, **collate_cfg)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    # One dataloader worker is one thread of torch and OpenCV work; measure that, then restore.
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


def _endless(loader) -> Iterator[dict]:
    # Re-enter the loader at each epoch's end, as mmengine's iteration-based loop does.
    while True:
        yield from loader


def _stop_workers(loader, *iterators) -> None:
    """Shut down the worker processes of ``loader`` (its persistent iterator) and of ``iterators`` now.

    Left to the garbage collection of the dropped Runner, every worker sat out torch's 5 s join timeout before
    being killed (measured: 5.1 s per worker on the CPU, whichever config; 0.01 s in all when shut down here),
    which added about 70 s of teardown per measurement with 14 workers on the GPU machine.
    """
    for it in (getattr(loader, '_iterator', None), *iterators):
        if hasattr(it, '_shutdown_workers'):  # torch's multi-process iterator; nothing to stop otherwise
            it._shutdown_workers()


def _free_memory() -> None:
    # Collect the dropped runner's model, optimizer and loader workers before the next measurement.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

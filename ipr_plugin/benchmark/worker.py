"""One config's measurements in one fresh process: ``python -m ipr_plugin.benchmark.worker SPEC.json``.

A process per config keeps registries, CUDA state (peak memory, cuDNN autotuning, allocator caches) and
dataloader worker pools of one config from touching the next one's numbers. The result (JSON) goes to
``spec.result_file``, rewritten after every measurement, so a worker stopped at the command's ``--time-limit``
leaves the measurements it finished; a measurement that fails is recorded with its error, and the others
still run. None starts after ``spec.deadline``: those are listed under ``cut_off``.
"""
import sys
import time
import traceback
from typing import Any, Callable, Dict

import torch

import ipr_plugin  # noqa: F401  (registers the plugin's modules, as a config's custom_imports would)
from ..arguments import write_json
from ..cli import hide_pkg_resources_notice
from .measure import measure_eval, measure_host, measure_loader, measure_metric, measure_pipeline, measure_train
from .overrides import cpu_adjustments, describe, load_bench_config
from .spec import WorkerSpec


def run_worker(spec: WorkerSpec) -> Dict[str, Any]:
    """Run the measurements ``spec`` asks for and return the result dict (also written to its file)."""
    cfg = load_bench_config(spec)
    notes = cpu_adjustments(cfg, spec.device)
    result: Dict[str, Any] = dict(
        name=spec.name, config=spec.config, device=spec.device, setup=describe(cfg), notes=notes,
        gpu_name=torch.cuda.get_device_name() if spec.device == 'cuda' else None, errors={})
    # The single-threaded pipeline measurements first, while no loader workers compete for the cores; the final
    # COCO evaluation (g) last: it is main-process CPU work of minutes at COCO scale, and a time limit should cut
    # it rather than the GPU windows.
    jobs: Dict[str, Callable[[], Dict[str, Any]]] = {
        'pipeline': lambda: measure_pipeline(cfg, spec.pipeline_samples, spec.batch_size, spec.seed),
        'test_pipeline': lambda: measure_pipeline(cfg, spec.pipeline_samples, spec.batch_size, spec.seed,
                                                  loader_key='val_dataloader'),
        'host': lambda: measure_host(cfg, spec.batch_size, spec.device, spec.seed),
        'loader': lambda: measure_loader(cfg, spec.warmup, spec.iters, spec.seed),
        'train': lambda: measure_train(cfg, spec.warmup, spec.iters, spec.device),
        'eval': lambda: measure_eval(cfg, spec.warmup, spec.iters, spec.device),
        'metric': lambda: measure_metric(cfg, spec.metric_images, spec.work_dir, spec.seed),
    }
    for key, job in jobs.items():
        if key in spec.skip:
            continue
        if spec.deadline is not None and time.time() >= spec.deadline:
            result.setdefault('cut_off', []).append(key)
            continue
        start = time.perf_counter()
        print(f'[benchmark] {spec.name}: {key} ...', file=sys.stderr, flush=True)
        try:
            result[key] = job()
        except Exception as err:  # record it and go on: one failure should not hide the other numbers
            traceback.print_exc()
            result['errors'][key] = f'{type(err).__name__}: {err}'
        print(f'[benchmark] {spec.name}: {key} done in {time.perf_counter() - start:.1f} s', file=sys.stderr,
              flush=True)
        # after each measurement, replaced whole: a worker killed later (or while writing) leaves what it measured
        write_json(spec.result_file, result, indent=1)
    write_json(spec.result_file, result, indent=1)
    return result


def main() -> int:
    hide_pkg_resources_notice()
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    result = run_worker(WorkerSpec.load(sys.argv[1]))
    return 1 if result['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())

"""Throughput benchmark: mmpose's own IPR config (the anchor) against this plugin's configs.

One command (``tools/benchmark.py``) writes a synthetic COCO-layout set, then measures every config in a fresh
subprocess (:mod:`ipr_plugin.benchmark.worker`) on the same data with the same batch size and worker count:

(a) end-to-end training img/s through mmengine's Runner (steady-state window after warm-up);
(b) train dataloader samples/s alone;
(c) evaluation img/s with flip test through the Runner's validation loop;
(d) per-sample CPU cost of the train pipeline, by transform, on one thread; (e) the same for the test pipeline;
(f) main-process cost per sample of moving a batch's data samples to the device (the data preprocessor);
(g) the final COCO evaluation (the metric's ``compute_metrics``) on predictions at COCO val2017 scale
    (:mod:`.coco_scale`);

plus peak GPU memory and GPU utilisation during training. It prints a table with ratios against the anchor and
appends it, with the command, date and machine, to ``BENCHMARKS.md``.

Modules: :mod:`.spec` (what a worker is asked to do), :mod:`.overrides` (config changes for the benchmark),
:mod:`.timing` (window timer hook, GPU utilisation sampler), :mod:`.measure` (the measurements),
:mod:`.coco_scale` (predictions for (g)), :mod:`.worker` (one config in one process), :mod:`.report` (tables,
machine, markdown), :mod:`.rounds` (``--rounds``: (d) and (e) repeated), :mod:`.plot` (``--plot``), :mod:`.cli`
(the command).
"""
from .cli import main

__all__ = ['main']

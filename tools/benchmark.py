"""Throughput benchmark of mmpose's IPR config against this plugin's configs (logic: ipr_plugin/benchmark).

Examples:
    python tools/benchmark.py                         # mmpose IPR, ours, ours-fast -> appends to BENCHMARKS.md
    python tools/benchmark.py --tiny --out /tmp/B.md  # CI-sized: CPU, ResNet-18, 8+4 images, 3 iterations
    python tools/benchmark.py --configs mmpose::body_2d_keypoint/integral_regression/coco/ipr_res50_8xb64-210e_coco-256x256.py \
        fast=configs/ipr_res50_fast-8xb64-210e_coco-256x256.py --skip pipeline --label "fast only"
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.benchmark import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())

"""The GPU measurements BENCHMARKS.md still lacks, in one command sized for a machine held for a fixed time.

    python tools/gpu_measurements.py OUT [--seconds 540] [--parts benchmark study compile]

See ipr_plugin/apis/gpu_measurements.py.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.apis.gpu_measurements import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())

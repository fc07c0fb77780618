"""The GPU measurements BENCHMARKS.md still lacks, in one command sized for a machine held for a fixed time.

    python tools/gpu_measurements.py OUT [--seconds 540] [--parts benchmark study compile]

See ipr_plugin/apis/gpu_measurements.py.
"""
import sys

from ipr_plugin.apis.gpu_measurements import main

if __name__ == '__main__':
    sys.exit(main(prog='python tools/gpu_measurements.py'))

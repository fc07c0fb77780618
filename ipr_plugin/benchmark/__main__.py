"""``python -m ipr_plugin.benchmark``: the benchmark without a checkout's tools/benchmark.py."""
import sys

from .cli import main

sys.exit(main())

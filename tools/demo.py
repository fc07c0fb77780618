"""The README's main job: synthetic data -> untrained AP -> `mim train` (CPU) -> trained AP -> pictures.

Usage: python tools/demo.py [--epochs N] [--num-train N] [--work-dir DIR]   (or simply `make demo`)
See ipr_plugin/cli/demo.py.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.cli.demo import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(prog='python tools/demo.py'))

"""Draw a run's training curves (see ipr_plugin/cli/plot_training.py and ``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.cli.plot_training import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(prog='python tools/plot_training.py'))

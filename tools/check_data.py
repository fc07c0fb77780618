"""Check a config's data before a long run (see ipr_plugin/cli/check_data.py and ``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.cli.check_data import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(prog='python tools/check_data.py'))

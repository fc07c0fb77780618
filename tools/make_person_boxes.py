"""Write mmpose's person ``bbox_file`` with an mmdet detector (see ipr_plugin/cli/make_person_boxes.py and
``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.cli.make_person_boxes import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(prog='python tools/make_person_boxes.py'))

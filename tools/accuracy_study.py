"""Accuracy study: mmpose's integral-regression configs against ipr_plugin's, same budget, hard synthetic split.

Full mode (one GPU):  python tools/accuracy_study.py
CI smoke run (CPU):   python tools/accuracy_study.py --tiny --work-dir /tmp/study --out /tmp/study/report
See ``python tools/accuracy_study.py --help`` and ipr_plugin/apis/accuracy_study.py.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.apis.accuracy_study import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())

"""Background share of a trained IPR model's maps, by keypoint visibility and person size.

    python tools/background_share.py CONFIG CHECKPOINT --ann-file ANN --img-dir DIR [--out table.json]

See ``python tools/background_share.py --help`` and ipr_plugin/apis/background_share.py.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.apis.background_share import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())

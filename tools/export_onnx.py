"""Export an IPR pose model to ONNX (see ipr_plugin/cli/export_onnx.py and ``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.realpath(__file__))))  # this checkout's package, before any installed

from ipr_plugin.cli.export_onnx import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(prog='python tools/export_onnx.py'))

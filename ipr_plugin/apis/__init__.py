"""What the tools do, as functions: person boxes from an mmdet detector and ONNX export (exported here), and the
modules behind the other tools (data check, demo, visualisation, training curves, checkpoint check, background
share, the accuracy study and the GPU measurements).

mmdet and onnx are imported only when a function needs them.
"""
from .onnx_export import (IPRExportModule, build_export_module, build_pose_model, export_module, export_onnx,
                          verify_onnx)
from .person_boxes import format_summary, make_person_boxes

__all__ = ['make_person_boxes', 'format_summary', 'IPRExportModule', 'build_pose_model', 'build_export_module',
           'export_module', 'export_onnx', 'verify_onnx']

"""User-facing tools: person boxes from an mmdet detector, and ONNX export of IPR models.

Both import mmdet / mmpose / onnx lazily, so importing this package stays cheap.
"""
from .onnx_export import (IPRExportModule, build_export_module, build_pose_model, export_module, export_onnx,
                          verify_onnx)
from .person_boxes import format_summary, make_person_boxes

__all__ = ['make_person_boxes', 'format_summary', 'IPRExportModule', 'build_pose_model', 'build_export_module',
           'export_module', 'export_onnx', 'verify_onnx']

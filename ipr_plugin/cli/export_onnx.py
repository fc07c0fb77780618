"""Export an IPR pose model to ONNX (normalisation, soft-argmax and keypoint scores inside the graph).

Input ``image`` (B, 3, H, W) float32 RGB pixels in [0, 255] of the warped person crop; outputs
``keypoints`` (B, K, 2) normalised crop coordinates (pixel ``x = ((u + 1) w - 1) / 2``) and ``scores`` (B, K).
See ``ipr_plugin.apis.onnx_export``.

Example::

    python tools/export_onnx.py configs/ipr_res50_8xb64-210e_coco-256x256.py work_dirs/ipr/best.pth \\
        --out ipr_res50.onnx --verify
"""
import argparse
import sys
from typing import Optional, Sequence

import torch

from ..arguments import ToolHelpFormatter, add_cfg_options, exit_on_input_errors, parser_check_out_file, parser_error
from ..apis.onnx_export import (MIN_OPSET, build_export_module, export_argument_problems, export_module,
                                require_onnx, verify_onnx)
from . import tool_main


def parse_args(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=ToolHelpFormatter)
    parser.add_argument('config', help='pose config file')
    parser.add_argument('checkpoint', nargs='?', default=None, help='checkpoint (omit for random weights)')
    parser.add_argument('--out', required=True, help='.onnx file to write')
    parser.add_argument('--input-size', type=int, nargs=2, default=None, metavar=('W', 'H'),
                        help="default: the codec's input_size")
    parser.add_argument('--opset', type=int, default=17, help=f'ONNX opset version, {MIN_OPSET} or later')
    parser.add_argument('--batch-size', type=int, default=1, help='batch of the tracing input')
    parser.add_argument('--static-batch', action='store_true', help='fix the batch axis to --batch-size')
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch on random inputs and print the max difference')
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    # before the model is built, and naming the flag rather than the API argument
    parser_error(parser, export_argument_problems(args.input_size, args.batch_size, args.opset))
    parser_check_out_file(parser, args.out, inputs=[args.config, args.checkpoint])
    return args


@tool_main('export_onnx')
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> None:
    args = parse_args(argv, prog)
    try:  # before the model is built
        require_onnx()
        if args.verify:
            require_onnx('onnxruntime')
    except ImportError as error:
        sys.exit(f'export_onnx: {error}')
    with exit_on_input_errors('export_onnx'):
        module = build_export_module(args.config, args.checkpoint, args.cfg_options)
        out = export_module(module, args.out, args.input_size, args.opset, args.batch_size,
                            dynamic_batch=not args.static_batch)
    print(f'wrote {out}' + ('' if args.checkpoint else ' (no --checkpoint: random weights)'))
    if args.verify:
        w, h = args.input_size or module.input_size
        batches = [args.batch_size] if args.static_batch else [args.batch_size, args.batch_size + 1]
        generator = torch.Generator().manual_seed(0)
        inputs = [torch.rand(b, 3, h, w, generator=generator) * 255 for b in batches]
        diffs = verify_onnx(out, module, inputs)
        units = dict(keypoints='normalised crop coordinates', scores='probability')
        print('max |onnxruntime - torch|: ' + ', '.join(f'{k} {v:.3g}' + (f' ({units[k]})' if k in units else '')
                                                        for k, v in diffs.items()) + f'; batch sizes {batches}')


if __name__ == '__main__':
    sys.exit(main())

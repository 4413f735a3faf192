"""``convert_to_caffe2_models.py``: export a trained SSD to ONNX, check the file, and write Caffe2 files
when Caffe2 is installed.

    python convert_to_caffe2_models.py <net> <model.pth> <labels.txt> [--output models/<net>.onnx]
        [--dynamic_batch] [--opset 13] [--exporter auto|torchscript|dynamo] [--with_postprocess]
        [--int8 --calibration_data DIR [--calibration_images 200] [--calibration_method minmax] [--int8_heads float]
         [--int8_float_layers auto|N] [--validation_dataset DIR [--int8_map_tolerance 0.01]]
         [--int8_format qdq|qoperator] [--int8_weights int8|uint8] [--int8_reduce_range B] [--int8_float_depthwise]]

Writes ``models/<net>.onnx`` (or ``--output``) with ``.labels.txt`` and ``.json`` beside it (the contract is
in docs/deploy.md). Then checks it: ONNX Runtime against PyTorch (when they differ by more than 1e-4 the
check says FAILED, the script exits non-zero and the file is kept as ``<name>.FAILED.onnx`` for
inspection), and OpenCV DNN (a warning when OpenCV cannot run it). A ``--with_postprocess`` graph is
checked in ONNX Runtime only: its network part against PyTorch, its detections against ONNX's
NonMaxSuppression rule on the same scores and boxes (``vision.export.checks.check_postprocess``).
With ``--int8`` it also writes ``<name>.int8.onnx`` (ONNX Runtime static quantization calibrated on images
of ``--calibration_data``; see ``vision.export.quantize``), after a sensitivity pass that keeps in float32
the layers whose INT8 costs the most accuracy (``vision.export.sensitivity``), checks that it finds
float32's objects, and prints both latencies, what the float32 layers cost (and both mAPs with
``--validation_dataset``).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from vision.cli.errors import run_reporting_errors
from vision.cli.flags import add_input_size_argument, add_model_arguments, non_negative_int, str2bool
from vision.export.onnx_export import DEFAULT_OPSET, resolve_exporter
from vision.export.pipeline import ExportRequest, Int8Options, export_model, print_warning
from vision.export.quantize import (
    DEFAULT_FLOAT_LAYERS,
    DEFAULT_MAP_TOLERANCE,
    DEFAULT_REDUCE_RANGE,
    QUANT_FORMATS,
    WEIGHT_TYPES,
    choose_calibration_images,
)
from vision.ssd import weights
from vision.ssd.registry import get_net_type
from vision.ssd.sidecar import resolve_image_size
from vision.utils.labels import read_label_file
from vision.zoo import resolve_labels

DEFAULT_OUTPUT = os.path.join("models", "{net}.onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a trained SSD to ONNX (and Caffe2 when available), then check the file.")
    add_model_arguments(parser, onnx=False)
    parser.add_argument("--output", default=None, help="the .onnx file to write (default: models/<net>.onnx)")
    parser.add_argument("--dynamic_batch", action="store_true", help="free batch axis (default: batch 1)")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 13; 11-17 with the TorchScript exporter, 17+ with dynamo)")
    parser.add_argument("--exporter", default="auto", choices=("auto", "torchscript", "dynamo"),
                        help="torch's exporter: auto takes TorchScript for opsets up to 17, dynamo above")
    parser.add_argument("--with_postprocess", action="store_true",
                        help="append box selection and NMS: outputs boxes (M,4), scores, labels, batch_index")
    parser.add_argument("--candidate_size", type=int, default=200,
                        help="with --with_postprocess: boxes per class before NMS (fixed in the graph)")
    parser.add_argument("--prob_threshold", type=float, default=0.01,
                        help="with --with_postprocess: default of the graph's prob_threshold input")
    parser.add_argument("--int8", action="store_true",
                        help="also write <name>.int8.onnx, quantized with ONNX Runtime (QDQ, per-channel weights)")
    parser.add_argument("--calibration_data", default=None,
                        help="with --int8: a folder of images, or any data set root, to calibrate on")
    parser.add_argument("--calibration_images", type=int, default=200,
                        help="with --int8: how many images of --calibration_data to calibrate on")
    parser.add_argument("--calibration_method", default="minmax", choices=("minmax", "entropy", "percentile"),
                        help="with --int8: how activation ranges are chosen (minmax: constant memory, fastest)")
    parser.add_argument("--int8_heads", default="float", choices=("float", "int8"),
                        help="with --int8: the heads' last convolutions (class logits, box offsets) in float32 "
                             "(default: far smaller mAP loss) or in INT8 too")
    parser.add_argument("--validation_dataset", default=None,
                        help="with --int8: a data set root (test split) on which to print float32 and INT8 mAP; the "
                             "sensitivity pass then keeps layers in float32 until INT8 is within "
                             "--int8_map_tolerance of float32 on it")
    parser.add_argument("--int8_float_layers", default="auto" if DEFAULT_FLOAT_LAYERS is None else DEFAULT_FLOAT_LAYERS,
                        type=float_layers_value,
                        help="with --int8: auto runs the sensitivity pass, which keeps in float32 the layers whose "
                             "INT8 costs the most accuracy; 0 skips it; N keeps the N worst it finds")
    parser.add_argument("--int8_map_tolerance", type=float, default=DEFAULT_MAP_TOLERANCE,
                        help="with --int8 and --validation_dataset: the mAP INT8 may lose against float32 before the "
                             "sensitivity pass keeps another layer in float32")
    parser.add_argument("--int8_format", default="qdq", choices=QUANT_FORMATS,
                        help="with --int8: qdq (QuantizeLinear/DequantizeLinear pairs) or qoperator (QLinearConv)")
    parser.add_argument("--int8_weights", default="int8", choices=WEIGHT_TYPES,
                        help="with --int8: int8 (U8S8, with uint8 activations) or uint8 (U8U8) weights")
    parser.add_argument("--int8_reduce_range", type=str2bool, default=DEFAULT_REDUCE_RANGE,
                        help="with --int8: 7-bit weights, exact on CPUs without VNNI")
    parser.add_argument("--int8_float_depthwise", action="store_true",
                        help="with --int8: keep the depthwise convolutions in float32")
    parser.add_argument("--validation_dataset_type", default="voc", choices=("voc", "open_images"),
                        help="the format of --validation_dataset")
    add_input_size_argument(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(convert, build_parser().parse_args(argv))


def convert(args: argparse.Namespace) -> int:
    export_model(export_request(args))
    return 0


def export_request(args: argparse.Namespace) -> ExportRequest:
    """The export the flags ask for, every value resolved; one-line ValueErrors for bad flags, checked
    before the label file is read and the weights downloaded. A zoo name or URL is downloaded here."""
    get_net_type(args.net_type)
    int8 = int8_options(args)
    opset = args.opset or (DEFAULT_OPSET if args.exporter != "dynamo" else 18)
    exporter = resolve_exporter(args.exporter, opset)
    label_path = resolve_labels(args.label_path, args.model_path)  # "-": the zoo entry's
    class_names = tuple(read_label_file(label_path))
    image_size = resolve_image_size(args.resolution, args.model_path, args.net_type)
    return ExportRequest(net_type=args.net_type, model_path=weights.resolve(args.model_path), class_names=class_names,
                         output=args.output or DEFAULT_OUTPUT.format(net=args.net_type), label_path=label_path,
                         image_size=image_size, opset=opset, exporter=exporter, dynamic_batch=args.dynamic_batch,
                         with_postprocess=args.with_postprocess, candidate_size=args.candidate_size,
                         prob_threshold=args.prob_threshold, mb2_width_mult=args.mb2_width_mult, int8=int8)


def int8_options(args: argparse.Namespace) -> Optional[Int8Options]:
    """``--int8`` and its flags (None without it), the calibration images chosen from --calibration_data;
    one-line errors for flags that do not go together and for folders without readable images."""
    if not args.int8:
        for flag in ("calibration_data", "validation_dataset"):
            if getattr(args, flag):
                raise ValueError(f"--{flag} applies with --int8 only")
        return None
    if not args.calibration_data:
        raise ValueError("--int8 needs --calibration_data DIR: a folder of images like those the model will see")
    images = choose_calibration_images(args.calibration_data, args.calibration_images, warn=print_warning)
    return Int8Options(tuple(images), args.calibration_data, method=args.calibration_method, heads=args.int8_heads,
                       validation_dataset=args.validation_dataset,
                       validation_dataset_type=args.validation_dataset_type, quant_format=args.int8_format,
                       weights=args.int8_weights, reduce_range=args.int8_reduce_range,
                       float_depthwise=args.int8_float_depthwise, float_layers=args.int8_float_layers,
                       map_tolerance=args.int8_map_tolerance)


def float_layers_value(text: str) -> Optional[int]:
    """``--int8_float_layers``: ``auto`` (None) or a count of 0 or more."""
    if text == "auto":
        return None
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"expected auto or {str(error).removeprefix('expected ')}") from None


if __name__ == "__main__":
    sys.exit(main())

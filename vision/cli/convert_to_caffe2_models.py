"""``convert_to_caffe2_models.py``: export a trained SSD to ONNX, check the file, and write Caffe2 files
when Caffe2 is installed.

    python convert_to_caffe2_models.py <net> <model.pth> <labels.txt> [--output models/<net>.onnx]
        [--dynamic_batch] [--opset 13] [--exporter auto|torchscript|dynamo] [--with_postprocess]

Writes ``models/<net>.onnx`` (or ``--output``) with ``.labels.txt`` and ``.json`` beside it (the contract is
in docs/deploy.md). Then checks it: ONNX Runtime against PyTorch (the export fails, and no file is left,
when they differ by more than 1e-4), and OpenCV DNN (a warning when OpenCV cannot run it). A
``--with_postprocess`` graph is checked against the PyTorch predictor's detections in ONNX Runtime only.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from vision.cli.errors import run_reporting_errors

DEFAULT_OUTPUT = os.path.join("models", "{net}.onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a trained SSD to ONNX (and Caffe2 when available), then check the file.")
    parser.add_argument("net_type", help="vgg16-ssd, mb1-ssd, mb1-ssd-lite, mb2-ssd-lite, mb3-large-ssd-lite, "
                                         "mb3-small-ssd-lite or sq-ssd-lite")
    parser.add_argument("model_path", help="the trained .pth (a state_dict or a training checkpoint), a zoo name or URL")
    parser.add_argument("label_path", help="the model's label file (class names, BACKGROUND first); - for a zoo entry's labels")
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
    parser.add_argument("--mb2_width_mult", type=float, default=1.0, help="width multiplier of mb2-ssd-lite")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(convert, build_parser().parse_args(argv))


def convert(args: argparse.Namespace) -> int:
    from vision.export.caffe2_export import caffe2_backend, export_caffe2
    from vision.export.checks import check_onnxruntime, check_opencv_dnn, check_postprocess
    from vision.export.metadata import side_file_paths
    from vision.export.onnx_export import DEFAULT_OPSET, export_onnx, resolve_exporter
    from vision.ssd.registry import create_net, get_net_type
    from vision.utils.labels import read_label_file

    get_net_type(args.net_type)
    opset = args.opset or (DEFAULT_OPSET if args.exporter != "dynamo" else 18)
    exporter = resolve_exporter(args.exporter, opset)
    from vision.zoo import resolve_labels

    class_names = read_label_file(resolve_labels(args.label_path, args.model_path))  # "-": the zoo entry's
    net = create_net(args.net_type, len(class_names), is_test=True, mb2_width_mult=args.mb2_width_mult)
    net.load(args.model_path)
    net.eval()

    output = args.output or DEFAULT_OUTPUT.format(net=args.net_type)
    folder, name = os.path.split(os.path.abspath(output))
    # Export under a temporary name; only a file that passed its check is renamed into place.
    staging = os.path.join(folder, f".tmp-{name}")
    staged = [staging, *side_file_paths(staging)]
    final = [output, *side_file_paths(output)]
    try:
        try:
            metadata = export_onnx(net, args.net_type, class_names, staging, opset=opset, dynamic_batch=args.dynamic_batch,
                                   exporter=exporter, with_postprocess=args.with_postprocess,
                                   candidate_size=args.candidate_size, prob_threshold=args.prob_threshold,
                                   mb2_width_mult=args.mb2_width_mult)
        except (ValueError, OSError):
            raise
        except Exception as error:  # torch's exporters raise many types; the first line says what failed
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{args.net_type}: the {exporter} exporter failed ({reason[:300]})") from None
        batch = "dynamic batch" if args.dynamic_batch else "batch 1"
        print(f"Exported {args.net_type} ({len(class_names)} classes, {metadata.num_priors} priors) with the {exporter} "
              f"exporter, opset {opset}, {batch}" + (", with postprocess" if args.with_postprocess else ""))
        if args.with_postprocess:
            result = check_postprocess(staging, net, args.net_type)
            print(result)
        else:
            result = check_onnxruntime(staging, net)
            print(result)
            if result.ok:
                opencv = check_opencv_dnn(staging, net, metadata)
                print(opencv if opencv.ok else f"warning: {opencv}")
        if not result.ok:
            raise ValueError(f"{output}: not written, the exported graph does not match PyTorch")
        for source, target in zip(staged, final):
            os.replace(source, target)
    finally:
        for path in staged:
            if os.path.exists(path):
                os.remove(path)
    print(f"Wrote {final[0]}, {final[2]} and {final[1]}")

    backend = caffe2_backend()
    if backend is None:
        print("Caffe2 files not written: caffe2 cannot be imported (it was removed from PyTorch in the 2.x series); "
              "the ONNX model is the one to deploy.")
    else:
        try:
            print(f"Wrote the Caffe2 model: {', '.join(export_caffe2(output, backend))}")
        except Exception as error:  # the ONNX part is done; Caffe2's converter is not ours to fix
            print(f"warning: Caffe2 conversion failed ({str(error).strip().splitlines()[0][:200]}); "
                  f"the ONNX model is complete", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

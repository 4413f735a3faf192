"""``convert_to_caffe2_models.py``: export a trained SSD to ONNX, check the file, and write Caffe2 files
when Caffe2 is installed.

    python convert_to_caffe2_models.py <net> <model.pth> <labels.txt> [--output models/<net>.onnx]
        [--dynamic_batch] [--opset 13] [--exporter auto|torchscript|dynamo] [--with_postprocess]
        [--int8 --calibration_data DIR [--calibration_images 200] [--calibration_method minmax] [--int8_heads float]
         [--validation_dataset DIR]]

Writes ``models/<net>.onnx`` (or ``--output``) with ``.labels.txt`` and ``.json`` beside it (the contract is
in docs/deploy.md). Then checks it: ONNX Runtime against PyTorch (when they differ by more than 1e-4 the
check says FAILED, the script exits non-zero and the file is kept as ``<name>.FAILED.onnx`` for
inspection), and OpenCV DNN (a warning when OpenCV cannot run it). A ``--with_postprocess`` graph is
checked in ONNX Runtime only: its network part against PyTorch, its detections against ONNX's
NonMaxSuppression rule on the same scores and boxes (``vision.export.checks.check_postprocess``).
With ``--int8`` it also writes ``<name>.int8.onnx`` (ONNX Runtime static quantization calibrated on images
of ``--calibration_data``; see ``vision.export.quantize``), checks that it finds float32's objects, and
prints both latencies (and both mAPs with ``--validation_dataset``).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from vision.cli.errors import run_reporting_errors
from vision.export.metadata import side_file_paths

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
                        help="with --int8: a data set root (test split) on which to print float32 and INT8 mAP")
    parser.add_argument("--validation_dataset_type", default="voc", choices=("voc", "open_images"),
                        help="the format of --validation_dataset")
    parser.add_argument("--resolution", default=None,
                        help="input size of the exported graph, N or WxH (e.g. 512, 512x288); default: the size in "
                             "the model's .pth.json sidecar, else the net's native size")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(convert, build_parser().parse_args(argv))


def convert(args: argparse.Namespace) -> int:
    from vision.export.caffe2_export import caffe2_backend, export_caffe2
    from vision.export.checks import check_onnxruntime, check_opencv_dnn, check_postprocess
    from vision.export.onnx_export import DEFAULT_OPSET, export_onnx, resolve_exporter
    from vision.ssd.registry import create_net, get_net_type
    from vision.ssd.sidecar import resolve_image_size
    from vision.utils.labels import read_label_file

    get_net_type(args.net_type)
    calibration_images = choose_int8_calibration(args)
    opset = args.opset or (DEFAULT_OPSET if args.exporter != "dynamo" else 18)
    exporter = resolve_exporter(args.exporter, opset)
    from vision.zoo import resolve_labels

    class_names = read_label_file(resolve_labels(args.label_path, args.model_path))  # "-": the zoo entry's
    image_size = resolve_image_size(args.resolution, args.model_path, args.net_type)
    net = create_net(args.net_type, len(class_names), is_test=True, mb2_width_mult=args.mb2_width_mult,
                     image_size=image_size)
    net.load(args.model_path)
    net.eval()

    output = args.output or DEFAULT_OUTPUT.format(net=args.net_type)
    # Export under a temporary name; only a file that passed its check is renamed into place.
    with StagedFiles(output) as staged:
        staging = staged.path
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
        print(f"Exported {args.net_type} at {net.config.size_text} ({len(class_names)} classes, {metadata.num_priors} "
              f"priors) with the {exporter} "
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
            # Kept under another name, so nothing picks it up as a good export but the user can inspect it.
            kept = failed_output_path(output)
            staged.publish(kept)
            raise ValueError(f"{output}: not written, the check FAILED ({result.name}: {result.message}); "
                             f"the exported file is kept as {kept} for inspection")
        staged.publish(output)
    print(f"Wrote {written_files_text(output)}")
    if args.int8:
        write_int8(output, calibration_images, args, class_names)

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


class StagedFiles:
    """An ONNX file and its side files (JSON, labels) written under a temporary name beside ``final_path``:
    ``path`` is where to write, ``publish(target)`` renames them all to ``target``'s names, and whatever was
    not published is removed on exit, so a final name never holds a partial or unchecked export."""

    def __init__(self, final_path: str):
        folder, name = os.path.split(os.path.abspath(final_path))
        self.path = os.path.join(folder, f".tmp-{name}")
        self.files = [self.path, *side_file_paths(self.path)]

    def publish(self, target: str) -> None:
        for source, destination in zip(self.files, [target, *side_file_paths(target)]):
            os.replace(source, destination)

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, *exc_info) -> None:
        for path in self.files:
            if os.path.exists(path):
                os.remove(path)


def written_files_text(output: str) -> str:
    """``"<x>.onnx, <x>.labels.txt and <x>.json"``: the published file and its side files, as printed."""
    model, metadata, labels = [output, *side_file_paths(output)]
    return f"{model}, {labels} and {metadata}"


def failed_output_path(output: str) -> str:
    """Where an export that failed its check is kept: ``models/x.onnx`` -> ``models/x.FAILED.onnx``."""
    root, extension = os.path.splitext(output)
    return f"{root}.FAILED{extension or '.onnx'}"


def choose_int8_calibration(args: argparse.Namespace) -> Optional[List[str]]:
    """The calibration images for --int8 (None without it); one-line errors for bad flags or folders."""
    if not args.int8:
        for flag in ("calibration_data", "validation_dataset"):
            if getattr(args, flag):
                raise ValueError(f"--{flag} applies with --int8 only")
        return None
    if not args.calibration_data:
        raise ValueError("--int8 needs --calibration_data DIR: a folder of images like those the model will see")
    from vision.export.quantize import choose_calibration_images

    return choose_calibration_images(args.calibration_data, args.calibration_images,
                                     warn=lambda message: print(f"warning: {message}", file=sys.stderr))


def write_int8(output: str, calibration_images: List[str], args: argparse.Namespace, class_names: List[str]) -> None:
    """Quantize the float32 file ``output`` into ``<name>.int8.onnx``, check it, report latency (and mAP)."""
    from vision.export.compare import check_int8_detections, compare_map, forward_latency_ms
    from vision.export.quantize import int8_output_path, quantize_onnx, read_rgb

    final_path = int8_output_path(output)
    with StagedFiles(final_path) as staged:
        staging = staged.path
        metadata = quantize_onnx(output, staging, calibration_images, method=args.calibration_method,
                                 heads=args.int8_heads)
        print(f"Quantized to INT8 ({metadata.quantization['quantized_nodes']} nodes, heads in "
              f"{metadata.quantization['heads']}, {args.calibration_method} calibration on {len(calibration_images)} "
              f"images of {args.calibration_data})")
        check_images = [read_rgb(path) for path in calibration_images[:8]]
        result = check_int8_detections(staging, output, check_images)
        if result.message.startswith("cannot run"):
            raise ValueError(f"{final_path}: not written, {result}")
        # Quantization's cost is the user's call (the mAP below says what it is): a mismatch warns.
        print(result if result.ok else f"warning: {result}")
        staged.publish(final_path)
    print(f"Wrote {written_files_text(final_path)}")
    float_ms, int8_ms = (forward_latency_ms(path, check_images[0]) for path in (output, final_path))
    print(f"Latency at batch 1 (ONNX Runtime, CPU, forward pass, median of 20): float32 {float_ms:.1f} ms, "
          f"INT8 {int8_ms:.1f} ms ({float_ms / int8_ms:.2f}x)")
    if args.validation_dataset:
        from vision.evaluation.data import open_dataset

        dataset = open_dataset(args.validation_dataset_type, args.validation_dataset, args.label_path)
        float_map, int8_map = compare_map(output, final_path, dataset, class_names)
        print(f"mAP (VOC07) on {len(dataset)} images of {args.validation_dataset}: float32 {float_map:.4f}, "
              f"INT8 {int8_map:.4f} ({int8_map - float_map:+.4f})")


if __name__ == "__main__":
    sys.exit(main())

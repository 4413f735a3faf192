"""``eval_ssd.py``: evaluate a trained SSD (a ``.pth``, or an exported ``.onnx`` with ``--backend onnx``) on the
test split of a VOC, Open Images, COCO JSON, YOLO or CSV data set.

Flags keep the original toolkit's names and defaults, plus this project's (docs/evaluation.md). They are
parsed once into a frozen :class:`EvalSettings` with the label file, device, batch size and workers
resolved. Prints per-class AP and the mean in the original's shape on stdout and writes
det_test_<class>.txt files, summary.json, PR plots and the confusion matrix to ``--eval_dir``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from vision.cli.errors import run_reporting_errors
from vision.cli.flags import (
    NET_TYPE_NAMES,
    add_engine_argument,
    add_input_size_argument,
    add_onnx_runtime_arguments,
    add_width_mult_argument,
    str2bool,
    unit_fraction,
)
from vision.datasets.annotated import trained_split_names
from vision.evaluation import METRICS, default_batch_size, default_num_workers, evaluate, write_outputs
from vision.evaluation.confusion import DEFAULT_CONFUSION_THRESHOLD
from vision.evaluation.data import DATASET_TYPES, open_dataset
from vision.utils.atomic import check_writable
from vision.utils.device import torch_device
from vision.utils.image_size import ImageSize, format_size, parse_resolution
from vision.utils.labels import read_label_file


@dataclass(frozen=True)
class EvalSettings:
    """What ``eval_ssd.py`` evaluates and how, every value resolved: ``label_file`` a local file (or None:
    the data set's class names), ``device`` a torch device string (for ONNX Runtime ``cpu``/``cuda[:N]``, or
    None: CUDA when this onnxruntime has it), ``image_size`` ``(width, height)`` from ``--resolution`` (None:
    the checkpoint's or the net type's). The other fields are the flags of the same name."""

    net: Optional[str]
    trained_model: str
    dataset: str
    dataset_type: str = "auto"
    label_file: Optional[str] = None
    use_2007_metric: bool = True
    nms_method: str = "hard"
    iou_threshold: float = 0.5
    eval_dir: str = "eval_results"
    mb2_width_mult: float = 1.0
    image_size: Optional[ImageSize] = None
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    device: Optional[str] = None
    max_detections: Optional[int] = None
    metric: str = "voc"
    backend: str = "pytorch"
    onnx_threads: int = 0
    onnx_optimization: str = "all"
    engine: str = "auto"
    confusion_threshold: float = DEFAULT_CONFUSION_THRESHOLD


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="SSD Evaluation on VOC Dataset.")
    parser.add_argument("--net", default=None, choices=sorted(NET_TYPE_NAMES),
                        help="The network architecture (default: vgg16-ssd; with --backend onnx, the file's own).")
    parser.add_argument("--trained_model", type=str, required=True,
                        help="The .pth state_dict to evaluate, or a zoo name or URL (python -m vision.zoo list).")
    parser.add_argument("--dataset_type", default="auto", type=str, choices=DATASET_TYPES,
                        help="Dataset format: voc, open_images, coco, yolo, csv, or auto (default: detected).")
    parser.add_argument("--dataset", type=str, required=True,
                        help="The dataset root (or a COCO JSON, YOLO data.yaml or CSV file); its test split is "
                             "used.")
    parser.add_argument("--label_file", type=str,
                        help="The label file path: the model's classes, BACKGROUND first, which also index the "
                             "data set's labels; default: the data set's class names.")
    parser.add_argument("--use_cuda", type=str2bool, default=True)
    parser.add_argument("--use_2007_metric", type=str2bool, default=True,
                        help="VOC2007 11-point AP if true, else the area under the interpolated PR curve.")
    parser.add_argument("--nms_method", type=str, default="hard")
    parser.add_argument("--iou_threshold", type=unit_fraction, default=0.5,
                        help="The threshold of Intersection over Union (matching a detection to ground truth), "
                             "in (0, 1].")
    parser.add_argument("--eval_dir", default="eval_results", type=str,
                        help="The directory to store evaluation results.")
    add_width_mult_argument(parser)
    add_input_size_argument(parser)
    parser.add_argument("--batch_size", default=None, type=int,
                        help="Images per predict_batch call (default: 32 on a GPU, 4 on a CPU).")
    parser.add_argument("--num_workers", default=None, type=int,
                        help="Data-loading worker processes, 0: load in the main process "
                             "(default: min(4, CPU cores) on a GPU, 0 on a CPU).")
    parser.add_argument("--device", default=None, type=str,
                        help="Torch device (cpu, cuda, cuda:1, ...); default: cuda:0 if available and --use_cuda.")
    parser.add_argument("--max_detections", default=None, type=int,
                        help="detections kept per image after NMS, best first; 0: no cap; default: the net "
                             "type's (none for the original's types, torchvision's 300/200 for ssdlite320-mb3-large/"
                             "ssd300-vgg16)")
    parser.add_argument("--metric", default="voc", choices=METRICS,
                        help="voc: the original's per-class AP; coco: mAP@[.5:.95], @.5, @.75 via pycocotools.")
    parser.add_argument("--confusion_threshold", default=DEFAULT_CONFUSION_THRESHOLD, type=float,
                        help="Score above which a detection counts in the per-class diagnosis (confusion matrix, "
                             "recall and precision at this threshold, matched at --iou_threshold); "
                             "default: %(default)s.")
    parser.add_argument("--backend", default="pytorch", choices=("pytorch", "onnx"),
                        help="onnx: --trained_model is a file from convert_to_caffe2_models.py (float32 or INT8, "
                             "with or without the NMS graph), run in ONNX Runtime; its labels.txt is the default "
                             "--label_file.")
    add_onnx_runtime_arguments(parser)
    add_engine_argument(parser)
    return parser


def choose_device(device: str | None, use_cuda: bool) -> torch.device:
    """--device if given (a one-line ValueError when this machine does not have it), else cuda:0 when CUDA
    is available and --use_cuda, else cpu."""
    return torch_device(device, use_cuda)


def eval_settings(args: argparse.Namespace) -> EvalSettings:
    """The settings from the parsed flags: ``--label_file -`` becomes the zoo entry's label file, the device
    chosen, ``--resolution`` parsed, batch size and workers given their defaults for the device."""
    label_file = args.label_file
    if label_file == "-":  # the zoo entry's labels (--trained_model names the entry)
        from vision.zoo import resolve_labels  # start-up time: the zoo imports torchvision's weights API

        label_file = resolve_labels(label_file, args.trained_model)
    image_size = parse_resolution(args.resolution) if args.resolution else None
    if args.backend == "onnx":
        device = args.device or (None if args.use_cuda else "cpu")
        batch_size, num_workers = args.batch_size, args.num_workers
    else:
        torch_device = choose_device(args.device, args.use_cuda)
        device = str(torch_device)
        batch_size = args.batch_size or default_batch_size(torch_device)
        num_workers = default_num_workers(torch_device) if args.num_workers is None else args.num_workers
    flags = {field.name: getattr(args, field.name) for field in dataclasses.fields(EvalSettings)
             if hasattr(args, field.name)}
    flags.update(label_file=label_file, image_size=image_size, device=device, batch_size=batch_size,
                 num_workers=num_workers)
    return EvalSettings(**flags)


def main(argv: list[str] | None = None) -> int:
    return run_reporting_errors(lambda args: evaluate_model(eval_settings(args)), build_parser().parse_args(argv))


def evaluate_model(settings: EvalSettings) -> int:
    # Before the inference, which can take hours: an unwritable --eval_dir would fail only after it.
    check_writable(settings.eval_dir, folder=True, flag="--eval_dir")
    if settings.backend == "onnx":
        return evaluate_exported_model(settings)
    from vision.ssd.registry import create_predictor
    from vision.ssd.weights import load_net

    net_type = settings.net or "vgg16-ssd"
    device = torch.device(settings.device)
    # With --label_file the data set indexes its labels by the model's classes (the original read both
    # lists separately, and a different order silently scored the wrong classes).
    dataset = open_dataset(settings.dataset_type, settings.dataset, settings.label_file)
    class_names = read_label_file(settings.label_file) if settings.label_file else list(dataset.class_names)
    net = load_net(net_type, settings.trained_model, len(class_names), image_size=settings.image_size,
                   is_test=True, mb2_width_mult=settings.mb2_width_mult, class_names=class_names,
                   label_file=settings.label_file or f"the data set {settings.dataset}")
    net = net.to(device).eval()
    predictor = create_predictor(net_type, net, nms_method=settings.nms_method, device=device,
                                 max_detections=settings.max_detections, engine=settings.engine)
    predictor.engine_report = lambda line: print(line, file=sys.stderr)
    predictor.expect_images(len(dataset))
    split = announce_split(dataset, settings.dataset)
    evaluation = evaluate(predictor, dataset, class_names, metric=settings.metric,
                          iou_threshold=settings.iou_threshold, use_2007_metric=settings.use_2007_metric,
                          confusion_threshold=settings.confusion_threshold,
                          batch_size=settings.batch_size, num_workers=settings.num_workers)
    summary = {
        "net": net_type,
        "trained_model": str(Path(settings.trained_model)),
        "dataset_type": settings.dataset_type,
        "dataset": str(Path(settings.dataset)),
        **split,
        "use_2007_metric": settings.use_2007_metric,
        "iou_threshold": settings.iou_threshold,
        "nms_method": settings.nms_method,
        "image_size": list(net.config.image_size),
        "device": settings.device,
        "engine": predictor.last_engine_build.engine if predictor.last_engine_build else "eager",
        "batch_size": settings.batch_size,
        "num_workers": settings.num_workers,
    }
    return report(settings, evaluation, summary)


def evaluate_exported_model(args: EvalSettings) -> int:
    """``--backend onnx``: the exported file in ONNX Runtime, through the same evaluation and outputs."""
    # onnxruntime is an optional dependency, needed by --backend onnx only
    from vision.export.exported import (
        describe_precision,
        exported_label_file,
        input_size_of,
        onnx_providers,
        open_exported_model,
    )

    if args.nms_method not in (None, "hard"):
        raise ValueError(f"--nms_method {args.nms_method}: an exported model runs hard NMS only")
    label_file = args.label_file or exported_label_file(args.trained_model)
    dataset = open_dataset(args.dataset_type, args.dataset, label_file)
    class_names = read_label_file(label_file) if label_file else list(dataset.class_names)
    device = args.device
    _, device_name = onnx_providers(device)
    predictor = open_exported_model(args.trained_model, class_names, net_type=args.net, device=device,
                                    num_threads=args.onnx_threads, optimization=args.onnx_optimization,
                                    resolution=format_size(args.image_size) if args.image_size else None)
    batch_size = args.batch_size or default_batch_size(device_name)
    num_workers = default_num_workers(device_name) if args.num_workers is None else args.num_workers
    split = announce_split(dataset, args.dataset)
    evaluation = evaluate(predictor, dataset, class_names, metric=args.metric, iou_threshold=args.iou_threshold,
                          confusion_threshold=args.confusion_threshold,
                          use_2007_metric=args.use_2007_metric, batch_size=batch_size, num_workers=num_workers)
    settings = {
        "net": predictor.metadata.net_type,
        "trained_model": str(Path(args.trained_model)),
        "backend": "onnx",
        "precision": describe_precision(predictor),
        "with_postprocess": predictor.has_postprocess,
        "dataset_type": args.dataset_type,
        "dataset": str(Path(args.dataset)),
        **split,
        "use_2007_metric": args.use_2007_metric,
        "iou_threshold": args.iou_threshold,
        "nms_method": "hard",
        "image_size": input_size_of(predictor),
        "device": device_name,
        "onnx_threads": args.onnx_threads,
        "onnx_optimization": args.onnx_optimization,
        "batch_size": batch_size,
        "num_workers": num_workers,
    }
    return report(args, evaluation, settings)


def announce_split(dataset, root: str) -> dict:
    """Say on stderr which split of ``root`` is evaluated, with a plain warning when training reads it too
    (a VOC root without test.txt gives trainval); returns the entries summary.json records."""
    names, trained_on = trained_split_names(dataset)
    split = ", ".join(names) or "?"
    print(f"evaluating the {split} split of {root} ({len(dataset)} images)", file=sys.stderr)
    if trained_on:
        print(f"warning: {root} has no test split, so the {split} split is evaluated, which training reads too: "
              "the mAP measures the fit to the training images, not the accuracy on new ones; add a test split "
              "(for VOC, ImageSets/Main/test.txt)", file=sys.stderr)
    return {"split": split, "split_is_training_data": trained_on}


def report(args: EvalSettings, evaluation, settings: dict) -> int:
    """Print the AP table (stdout), then write the outputs to --eval_dir and print the timing (stderr). The
    table comes first, so a file that cannot be written costs the files only: exit status 1 then."""
    print(evaluation.table(), flush=True)
    try:
        write_outputs(args.eval_dir, evaluation, settings)
    except OSError as error:
        print(f"error: {error}; the results above were not saved", file=sys.stderr)
        return 1
    if evaluation.timing.skipped_ids:
        print(f"warning: skipped {len(evaluation.timing.skipped_ids)} unreadable image(s), listed in "
              f"{Path(args.eval_dir) / 'summary.json'}", file=sys.stderr)
    print(f"{evaluation.timing.num_images} images in {evaluation.timing.seconds:.1f} s "
          f"({evaluation.timing.images_per_second:.1f} images/s); results in {args.eval_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``eval_ssd.py``: evaluate a trained SSD on a VOC-layout or Open Images test set.

Flags keep the original toolkit's names and defaults; ``--batch_size``, ``--num_workers``, ``--device``
and ``--metric`` are new. Prints per-class AP and the mean in the original's shape on stdout and writes
det_test_<class>.txt files, summary.json and PR plots to ``--eval_dir``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vision.cli.errors import run_reporting_errors
from vision.cli.flags import str2bool
from vision.evaluation import METRICS, default_batch_size, default_num_workers, evaluate, write_outputs
from vision.evaluation.data import DATASET_TYPES, open_dataset
from vision.utils.labels import read_label_file

def build_parser() -> argparse.ArgumentParser:
    from vision.ssd.registry import NET_TYPES

    parser = argparse.ArgumentParser(description="SSD Evaluation on VOC Dataset.")
    parser.add_argument("--net", default=None, choices=sorted(NET_TYPES),
                        help="The network architecture (default: vgg16-ssd; with --backend onnx, the file's own).")
    parser.add_argument("--trained_model", type=str, required=True, help="The .pth state_dict to evaluate, or a zoo name or URL (python -m vision.zoo list).")
    parser.add_argument("--dataset_type", default="auto", type=str, choices=DATASET_TYPES,
                        help="Dataset format: voc, open_images, coco, yolo, csv, or auto (default: detected).")
    parser.add_argument("--dataset", type=str, required=True,
                        help="The dataset root (or a COCO JSON, YOLO data.yaml or CSV file); its test split is used.")
    parser.add_argument("--label_file", type=str,
                        help="The label file path: the model's classes, BACKGROUND first, which also index the "
                             "data set's labels; default: the data set's class names.")
    parser.add_argument("--use_cuda", type=str2bool, default=True)
    parser.add_argument("--use_2007_metric", type=str2bool, default=True,
                        help="VOC2007 11-point AP if true, else the area under the interpolated PR curve.")
    parser.add_argument("--nms_method", type=str, default="hard")
    parser.add_argument("--iou_threshold", type=float, default=0.5,
                        help="The threshold of Intersection over Union (matching a detection to ground truth).")
    parser.add_argument("--eval_dir", default="eval_results", type=str,
                        help="The directory to store evaluation results.")
    parser.add_argument("--mb2_width_mult", default=1.0, type=float, help="Width Multiplifier for MobilenetV2")
    parser.add_argument("--resolution", default=None,
                        help="Input size, N or WxH (e.g. 512, 640x360); default: the size in the model's .pth.json "
                             "sidecar, else the net's native size.")
    parser.add_argument("--batch_size", default=None, type=int,
                        help="Images per predict_batch call (default: 32 on a GPU, 4 on a CPU).")
    parser.add_argument("--num_workers", default=None, type=int,
                        help="Data-loading worker processes, 0: load in the main process "
                             "(default: min(4, CPU cores) on a GPU, 0 on a CPU).")
    parser.add_argument("--device", default=None, type=str,
                        help="Torch device (cpu, cuda, cuda:1, ...); default: cuda:0 if available and --use_cuda.")
    parser.add_argument("--max_detections", default=None, type=int,
                        help="(new) detections kept per image after NMS, best first; 0: no cap; default: the net "
                             "type's (none for the original's types, torchvision's 300/200 for ssdlite320-mb3-large/"
                             "ssd300-vgg16)")
    parser.add_argument("--metric", default="voc", choices=METRICS,
                        help="voc: the original's per-class AP; coco: mAP@[.5:.95], @.5, @.75 via pycocotools.")
    parser.add_argument("--backend", default="pytorch", choices=("pytorch", "onnx"),
                        help="onnx: --trained_model is a file from convert_to_caffe2_models.py (float32 or INT8, "
                             "with or without the NMS graph), run in ONNX Runtime; its labels.txt is the default "
                             "--label_file.")
    parser.add_argument("--onnx_threads", default=0, type=int,
                        help="With --backend onnx: ONNX Runtime intra-op threads (0: one per physical core).")
    parser.add_argument("--onnx_optimization", default="all", choices=("disable", "basic", "extended", "all"),
                        help="With --backend onnx: ONNX Runtime graph optimisation level.")
    return parser


def choose_device(device: str | None, use_cuda: bool) -> torch.device:
    """--device if given, else cuda:0 when CUDA is available and --use_cuda, else cpu."""
    if device:
        return torch.device(device)
    return torch.device("cuda:0" if use_cuda and torch.cuda.is_available() else "cpu")


def main(argv: list[str] | None = None) -> int:
    return run_reporting_errors(evaluate_model, build_parser().parse_args(argv))


def evaluate_model(args: argparse.Namespace) -> int:
    if args.backend == "onnx":
        return evaluate_exported_model(args)
    args.net = args.net or "vgg16-ssd"
    from vision.ssd.registry import create_net, create_predictor
    from vision.ssd.sidecar import resolve_image_size

    device = choose_device(args.device, args.use_cuda)
    batch_size = args.batch_size or default_batch_size(device)
    num_workers = default_num_workers(device) if args.num_workers is None else args.num_workers
    # With --label_file the data set indexes its labels by the model's classes (the original read both
    # lists separately, and a different order silently scored the wrong classes).
    if args.label_file == "-":  # the zoo entry's labels (--trained_model names the entry)
        from vision.zoo import resolve_labels

        args.label_file = resolve_labels(args.label_file, args.trained_model)
    dataset = open_dataset(args.dataset_type, args.dataset, args.label_file)
    class_names = read_label_file(args.label_file) if args.label_file else list(dataset.class_names)

    image_size = resolve_image_size(args.resolution, args.trained_model, args.net)
    net = create_net(args.net, len(class_names), is_test=True, mb2_width_mult=args.mb2_width_mult, image_size=image_size)
    net.load(args.trained_model)
    net = net.to(device).eval()
    predictor = create_predictor(args.net, net, nms_method=args.nms_method, device=device,
                                 max_detections=args.max_detections)

    evaluation = evaluate(
        predictor,
        dataset,
        class_names,
        metric=args.metric,
        iou_threshold=args.iou_threshold,
        use_2007_metric=args.use_2007_metric,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    settings = {
        "net": args.net,
        "trained_model": str(Path(args.trained_model)),
        "dataset_type": args.dataset_type,
        "dataset": str(Path(args.dataset)),
        "use_2007_metric": args.use_2007_metric,
        "iou_threshold": args.iou_threshold,
        "nms_method": args.nms_method,
        "image_size": list(net.config.image_size),
        "device": str(device),
        "batch_size": batch_size,
        "num_workers": num_workers,
    }
    return report(args, evaluation, settings)


def evaluate_exported_model(args: argparse.Namespace) -> int:
    """``--backend onnx``: the exported file in ONNX Runtime, through the same evaluation and outputs."""
    from vision.evaluation.exported import describe_precision, exported_label_file, input_size_of, open_exported_model
    from vision.inference import onnx_providers

    if args.nms_method not in (None, "hard"):
        raise ValueError(f"--nms_method {args.nms_method}: an exported model runs hard NMS only")
    label_file = args.label_file or exported_label_file(args.trained_model)
    dataset = open_dataset(args.dataset_type, args.dataset, label_file)
    class_names = read_label_file(label_file) if label_file else list(dataset.class_names)
    device = args.device or (None if args.use_cuda else "cpu")
    _, device_name = onnx_providers(device)
    predictor = open_exported_model(args.trained_model, class_names, net_type=args.net, device=device,
                                    num_threads=args.onnx_threads, optimization=args.onnx_optimization)
    batch_size = args.batch_size or default_batch_size(device_name)
    num_workers = default_num_workers(device_name) if args.num_workers is None else args.num_workers
    evaluation = evaluate(predictor, dataset, class_names, metric=args.metric, iou_threshold=args.iou_threshold,
                          use_2007_metric=args.use_2007_metric, batch_size=batch_size, num_workers=num_workers)
    settings = {
        "net": predictor.metadata.net_type,
        "trained_model": str(Path(args.trained_model)),
        "backend": "onnx",
        "precision": describe_precision(predictor),
        "with_postprocess": predictor.has_postprocess,
        "dataset_type": args.dataset_type,
        "dataset": str(Path(args.dataset)),
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


def report(args: argparse.Namespace, evaluation, settings: dict) -> int:
    """Write the outputs to --eval_dir and print the AP table (stdout) and the timing (stderr)."""
    write_outputs(args.eval_dir, evaluation, settings)
    print(evaluation.table())
    if evaluation.timing.skipped_ids:
        print(f"warning: skipped {len(evaluation.timing.skipped_ids)} unreadable image(s), listed in "
              f"{Path(args.eval_dir) / 'summary.json'}", file=sys.stderr)
    print(f"{evaluation.timing.num_images} images in {evaluation.timing.seconds:.1f} s "
          f"({evaluation.timing.images_per_second:.1f} images/s); results in {args.eval_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

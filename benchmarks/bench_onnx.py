"""ONNX Runtime against eager PyTorch, end to end (``predict``: preprocess, forward, NMS), for every net type.

Weights: the deterministic ones of vision/utils/reference_weights.py (21 VOC classes); image: the VOC photo
000138.jpg (replicated for batch 8; a generated 500x332 picture without the shared folder, see
benchmarks/inputs.py). Each net is exported with a free batch axis twice: plain (NMS in numpy inside ``OnnxPredictor``)
and ``--with_postprocess`` (NMS in the graph). Prints a markdown table:
latency per image at batch 1 (median ms) and throughput at batch 8 (images/s), CPU; optionally the
forward pass alone in OpenCV DNN at batch 1.

    python benchmarks/bench_onnx.py [--nets mb1-ssd mb2-ssd-lite] [--repeats 5] [--threshold 0.4] [--opencv]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inputs import benchmark_photo  # noqa: E402
from benchmarks.timing import cpu_model, median_seconds  # noqa: E402
from vision.export.onnx_export import export_onnx  # noqa: E402
from vision.export.onnx_predictor import OnnxPredictor  # noqa: E402
from vision.ssd.registry import NET_TYPES, create_net, create_predictor  # noqa: E402
from vision.utils.labels import read_label_file  # noqa: E402
from vision.utils.reference_weights import load_deterministic_weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "models" / "voc-model-labels.txt"


def time_predictor(predictor, image: np.ndarray, threshold: float, repeats: int) -> dict:
    """``{"ms": per-image ms at batch 1, "ips": images/s at batch 8, "detections": at batch 1}``."""
    batch = [image] * 8
    single = median_seconds(lambda: predictor.predict(image, prob_threshold=threshold), repeats)
    eight = median_seconds(lambda: predictor.predict_batch(batch, prob_threshold=threshold), repeats)
    detections = len(predictor.predict(image, prob_threshold=threshold)[1])
    return {"ms": single * 1e3, "ips": 8 / eight, "detections": detections}


def time_opencv_forward(onnx_path: str, blob: np.ndarray, repeats: int) -> float:
    """Median ms of ``cv2.dnn`` forward on one preprocessed image; NaN when OpenCV cannot run the file."""
    try:
        dnn = cv2.dnn.readNetFromONNX(onnx_path)

        def run():
            dnn.setInput(blob, "input_0")
            dnn.forward(["scores", "boxes"])

        return median_seconds(run, repeats) * 1e3
    except cv2.error:
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=list(NET_TYPES), choices=list(NET_TYPES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.4, help="prob_threshold (the example's default)")
    parser.add_argument("--opencv", action="store_true", help="also time the forward pass in OpenCV DNN")
    args = parser.parse_args()

    photo_name, image = benchmark_photo()
    class_names = read_label_file(LABELS)
    cpu = cpu_model()
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} "
          f"(CPUExecutionProvider), OpenCV {cv2.__version__}; {cpu}, {os.cpu_count()} logical CPUs; "
          f"image {photo_name} {image.shape[1]}x{image.shape[0]}; prob_threshold {args.threshold}; "
          f"median of {args.repeats} runs\n")
    header = ("| net | PyTorch ms/img (b1) | ORT ms/img (b1) | speed-up | ORT+NMS graph ms/img (b1) | "
              "PyTorch img/s (b8) | ORT img/s (b8) | ORT+NMS graph img/s (b8) | detections/img (PyTorch, ORT, graph) |")
    if args.opencv:
        header += " OpenCV DNN forward ms (b1) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for net_type in args.nets:
        net = load_deterministic_weights(create_net(net_type, len(class_names), is_test=True)).eval()
        predictor = create_predictor(net_type, net)
        with tempfile.TemporaryDirectory() as folder:
            plain_path = os.path.join(folder, f"{net_type}.onnx")
            graph_path = os.path.join(folder, f"{net_type}-postprocess.onnx")
            export_onnx(net, net_type, class_names, plain_path, dynamic_batch=True)
            export_onnx(net, net_type, class_names, graph_path, dynamic_batch=True, with_postprocess=True)
            plain, graph = OnnxPredictor(plain_path), OnnxPredictor(graph_path)
            with torch.no_grad():
                torch_times = time_predictor(predictor, image, args.threshold, args.repeats)
            plain_times = time_predictor(plain, image, args.threshold, args.repeats)
            graph_times = time_predictor(graph, image, args.threshold, args.repeats)
            row = (f"| {net_type} | {torch_times['ms']:.1f} | {plain_times['ms']:.1f} | "
                   f"{torch_times['ms'] / plain_times['ms']:.1f}x | {graph_times['ms']:.1f} | "
                   f"{torch_times['ips']:.1f} | "
                   f"{plain_times['ips']:.1f} | {graph_times['ips']:.1f} | "
                   f"{torch_times['detections']}, {plain_times['detections']}, {graph_times['detections']} |")
            if args.opencv:
                blob = plain.preprocess([image])
                row += f" {time_opencv_forward(plain_path, blob, args.repeats):.1f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()

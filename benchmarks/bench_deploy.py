"""Edge deployment on the CPU: eager PyTorch, BatchNorm-folded PyTorch, ONNX Runtime float32 and INT8.

For each net: train it on the synthetic set (2000 trainval + 200 test images, 5 shapes, seed 2026, as the
learning check of bench_train.py: 1 epoch, batch 8, lr 0.03, no augmentation; mb1-ssd and sq-ssd-lite
3 epochs at lr 0.01, cosine) unless ``<work>/<net>/last.pth``
exists, export it (plain graph, free batch), quantize it (``vision.export.quantize``, calibrated on
``--calibration_images`` trainval images), then print a markdown table: forward-pass latency at batch 1
(median ms) and throughput at batch 8 (images/s) for the four ways of running it, and VOC07 mAP of each on
the 200 test images. A second table compares the calibration methods (time, INT8 mAP), a third times ONNX
Runtime session options (threads, optimisation level).

    python benchmarks/bench_deploy.py [--nets mb1-ssd mb1-ssd-lite mb2-ssd-lite sq-ssd-lite]
        [--work /tmp/ssd-deploy-bench] [--repeats 10] [--calibration_images 200]
        [--methods minmax entropy percentile] [--heads float|int8]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import cpu_model as cpu_name  # noqa: E402
from benchmarks.timing import median_seconds
from vision.datasets import build_dataset  # noqa: E402
from vision.datasets.synthetic import generate_voc_dataset  # noqa: E402
from vision.evaluation import evaluate  # noqa: E402
from vision.export.onnx_export import export_onnx  # noqa: E402
from vision.export.onnx_predictor import OnnxPredictor  # noqa: E402
from vision.export.quantize import DEFAULT_HEADS, HEAD_PRECISIONS, choose_calibration_images, quantize_onnx  # noqa: E402
from vision.ssd.registry import create_net, create_predictor  # noqa: E402

DEFAULT_NETS = ["mb1-ssd", "mb1-ssd-lite", "mb2-ssd-lite", "sq-ssd-lite"]
TRAIN_FLAGS = ["--seed", "0", "--no_progress", "--batch_size", "8", "--no_augmentation", "--num_workers", "1",
               "--use_cuda", "false"]
LEARNING_CHECK = ["--num_epochs", "1", "--lr", "0.03"]
# The learning check's schedule trains mb1-ssd-lite and mb2-ssd-lite (mAP about 0.8). mb1-ssd and sq-ssd-lite
# learn almost nothing in it (mAP 0.008 and 0.007 at lr 0.03; mb1-ssd 0.073 at 0.01), so they get
# three epochs at lr 0.01, the original README's rate for them, on a cosine schedule.
LONGER = ["--num_epochs", "3", "--lr", "0.01", "--scheduler", "cosine", "--t_max", "3"]
SCHEDULES = {"mb1-ssd": LONGER, "sq-ssd-lite": LONGER}


def train(net_type: str, data: Path, folder: Path) -> Path:
    checkpoint = folder / "last.pth"
    if not checkpoint.exists():
        from vision.cli.train_ssd import main as train_main

        code = train_main(["--datasets", str(data), "--net", net_type, "--checkpoint_folder", str(folder), *TRAIN_FLAGS,
                           *SCHEDULES.get(net_type, LEARNING_CHECK)])
        if code != 0:
            raise SystemExit(f"{net_type}: training failed with exit status {code}")
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=DEFAULT_NETS)
    parser.add_argument("--work", default="/tmp/ssd-deploy-bench")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calibration_images", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=["minmax"], help="calibration methods to compare")
    parser.add_argument("--heads", default=DEFAULT_HEADS, choices=HEAD_PRECISIONS,
                        help="precision of the heads' last convolutions in the INT8 files")
    args = parser.parse_args()

    work = Path(args.work)
    data = work / "shapes-2000"
    if not (data / "labels.txt").exists():
        generate_voc_dataset(data, num_images=2000, num_test=200, seed=2026, min_objects=1, max_objects=4)
    test_set, class_names = build_dataset("voc", [str(data)], is_test=True)
    calibration = choose_calibration_images(data / "JPEGImages", args.calibration_images, seed=0)
    photos = [test_set.get_image(index) for index in range(8)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__}; load average at start {load:.1f}; forward pass only "
          f"(preprocessed 300x300 input), median of {args.repeats}; mAP: VOC07 on {len(test_set)} test images\n")
    print("| net | eager ms (b1) | fused ms (b1) | ORT fp32 ms (b1) | ORT INT8 ms (b1) | INT8 vs fp32 (b1) | "
          "eager img/s (b8) | fused img/s (b8) | ORT fp32 img/s (b8) | ORT INT8 img/s (b8) | "
          "mAP eager / fused / fp32 / INT8 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    options_rows, calibration_rows = [], []
    for net_type in args.nets:
        folder = work / net_type
        net = create_net(net_type, len(class_names), is_test=True)
        net.load(str(train(net_type, data, folder)))
        net.eval()
        float_path, int8_paths = folder / f"{net_type}.onnx", {}
        export_onnx(net, net_type, class_names, float_path, dynamic_batch=True)
        calibration_seconds = {}
        for method in args.methods:
            int8_paths[method] = folder / f"{net_type}.{method}.int8.onnx"
            start = time.perf_counter()
            quantize_onnx(float_path, int8_paths[method], calibration, method=method, heads=args.heads)
            calibration_seconds[method] = time.perf_counter() - start

        eager, fused = create_predictor(net_type, net), create_predictor(net_type, net)
        eager.fuse_batchnorm = False
        fp32, int8 = OnnxPredictor(float_path), OnnxPredictor(int8_paths[args.methods[0]])
        batch1, batch8 = eager.preprocess(photos[:1]), eager.preprocess(photos)
        runs = {}
        with torch.no_grad():
            for name, predictor in (("eager", eager), ("fused", fused)):
                runs[name] = (median_seconds(lambda: predictor.forward(batch1), args.repeats),
                              median_seconds(lambda: predictor.forward(batch8), args.repeats))
        for name, predictor in (("fp32", fp32), ("int8", int8)):
            b1, b8 = batch1.numpy(), batch8.numpy()
            runs[name] = (median_seconds(lambda: predictor.forward(b1), args.repeats),
                          median_seconds(lambda: predictor.forward(b8), args.repeats))
        maps = [evaluate(predictor, test_set, class_names, progress=False).mean_ap
                for predictor in (eager, fused, fp32, int8)]
        ms = {name: value[0] * 1e3 for name, value in runs.items()}
        ips = {name: 8 / value[1] for name, value in runs.items()}
        print(f"| {net_type} | {ms['eager']:.1f} | {ms['fused']:.1f} | {ms['fp32']:.1f} | {ms['int8']:.1f} | "
              f"{ms['fp32'] / ms['int8']:.2f}x | {ips['eager']:.1f} | {ips['fused']:.1f} | {ips['fp32']:.1f} | "
              f"{ips['int8']:.1f} | {' / '.join(f'{value:.3f}' for value in maps)} |", flush=True)
        for method in args.methods:
            value = maps[3] if method == args.methods[0] else evaluate(OnnxPredictor(int8_paths[method]), test_set,
                                                                         class_names, progress=False).mean_ap
            calibration_rows.append(f"| {net_type} | {method} | {calibration_seconds[method]:.0f} | {value:.3f} | "
                                    f"{maps[2] - value:+.3f} |")
        for threads in (1, 0):
            for level in ("basic", "extended", "all"):
                for label, path in (("fp32", float_path), ("INT8", int8_paths[args.methods[0]])):
                    predictor = OnnxPredictor(path, num_threads=threads, optimization=level)
                    seconds = median_seconds(lambda: predictor.forward(batch1.numpy()), args.repeats)
                    options_rows.append(f"| {net_type} | {label} | {threads or 'auto'} | {level} | "
                                        f"{seconds * 1e3:.1f} |")
    print(f"\nCalibration methods ({len(calibration)} images, heads in {args.heads}; quantization time includes "
          "calibration):\n")
    print("| net | method | quantization s | INT8 mAP | fp32 minus INT8 mAP |\n|---|---|---|---|---|")
    print("\n".join(calibration_rows))
    print("\nONNX Runtime session options, batch 1 (threads auto = one per physical core):\n")
    print("| net | precision | threads | graph optimisation | ms (b1) |\n|---|---|---|---|---|")
    print("\n".join(options_rows))


if __name__ == "__main__":
    main()

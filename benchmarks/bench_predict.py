"""Predictor latency per image, split into preprocess / forward / postprocess, for every net type.

Weights: the deterministic ones of vision/utils/reference_weights.py; image: the VOC photo 000138.jpg
(replicated for batch 8; a generated 500x332 picture without the shared folder, see benchmarks/inputs.py). Prints a markdown table; ``--original`` adds the original toolkit's
one-image-at-a-time predictor (per-class Python NMS loop) on the same machine as the baseline.

    python benchmarks/bench_predict.py [--nets mb1-ssd mb2-ssd-lite] [--repeats 5] [--original]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inputs import benchmark_photo  # noqa: E402
from benchmarks.original_predictor import original_predict  # noqa: E402
from vision.ssd.registry import NET_TYPES, create_net, create_predictor  # noqa: E402
from vision.utils.reference_weights import load_deterministic_weights  # noqa: E402



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_stages(predictor, images, prob_threshold: float, repeats: int) -> dict:
    """Median seconds per image of each stage over ``repeats`` runs (after one warm-up)."""
    stages = {"preprocess": [], "forward": [], "postprocess": []}
    sizes = [image.shape[:2] for image in images]
    detections = 0
    for run in range(repeats + 1):
        _sync(predictor.device)
        start = time.perf_counter()
        batch = predictor.preprocess(images)
        _sync(predictor.device)
        after_pre = time.perf_counter()
        scores, boxes = predictor.forward(batch)
        _sync(predictor.device)
        after_forward = time.perf_counter()
        results = predictor.postprocess(scores, boxes, sizes, prob_threshold=prob_threshold)
        _sync(predictor.device)
        end = time.perf_counter()
        if run == 0:
            continue
        stages["preprocess"].append((after_pre - start) / len(images))
        stages["forward"].append((after_forward - after_pre) / len(images))
        stages["postprocess"].append((end - after_forward) / len(images))
        detections = sum(len(r[1]) for r in results) / len(images)
    timings = {name: statistics.median(values) for name, values in stages.items()}
    timings["total"] = sum(timings.values())
    timings["detections"] = detections
    return timings


def time_original(predictor, image, prob_threshold: float, repeats: int) -> float:
    original_predict(predictor, image, prob_threshold=prob_threshold)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        original_predict(predictor, image, prob_threshold=prob_threshold)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=list(NET_TYPES), choices=list(NET_TYPES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.01, 0.4])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--original", action="store_true", help="also time the original's predictor (batch 1)")
    args = parser.parse_args()

    photo_name, image = benchmark_photo()
    device_names = {"cpu": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"}
    if torch.cuda.is_available():
        device_names["cuda"] = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}; image {photo_name} {image.shape[1]}x{image.shape[0]}; "
          f"devices: {', '.join(f'{k}={v}' for k, v in device_names.items() if k in args.devices)}\n")
    header = "| net | device | threshold | batch | preprocess ms | forward ms | postprocess ms | total ms/img | detections/img |"
    if args.original:
        header += " original ms/img | speed-up |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for net_type in args.nets:
        for device_name in args.devices:
            device = torch.device(device_name)
            net = load_deterministic_weights(create_net(net_type, 21, is_test=True))
            predictor = create_predictor(net_type, net.to(device))
            for threshold in args.thresholds:
                for batch_size in args.batch_sizes:
                    timings = time_stages(predictor, [image] * batch_size, threshold, args.repeats)
                    row = (f"| {net_type} | {device_name} | {threshold} | {batch_size} | "
                           f"{timings['preprocess'] * 1e3:.1f} | {timings['forward'] * 1e3:.1f} | "
                           f"{timings['postprocess'] * 1e3:.1f} | {timings['total'] * 1e3:.1f} | {timings['detections']:.0f} |")
                    if args.original:
                        if batch_size == 1:
                            original = time_original(predictor, image, threshold, max(2, args.repeats // 2))
                            row += f" {original * 1e3:.0f} | {original / timings['total']:.1f}x |"
                        else:
                            row += " | |"
                    print(row, flush=True)


if __name__ == "__main__":
    main()

"""Predictor latency per image, split into preprocess / forward / postprocess, for every net type.

Weights: the deterministic ones of vision/utils/reference_weights.py; image: the VOC photo 000138.jpg
(replicated for batch 8; a generated 500x332 picture without the shared folder, see benchmarks/inputs.py). Prints a
markdown table; ``--original`` adds the original toolkit's one-image-at-a-time predictor (per-class Python NMS loop) on
the same machine as the baseline.

    python benchmarks/bench_predict.py [--nets mb1-ssd mb2-ssd-lite] [--repeats 5] [--original]
    python benchmarks/bench_predict.py --summary   # input, parameters, priors, CPU batch-1 latency per type

``--summary`` sets the original's net types beside the ones on torchvision's architectures
(ssdlite320-mb3-large, ssd300-vgg16): each at its native input and its own postprocessing defaults
(score threshold: the original's 0.01 vs torchvision's 0.001 / 0.01), and at threshold 0.4.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inputs import benchmark_photo  # noqa: E402
from benchmarks.original_predictor import original_predict  # noqa: E402
from benchmarks.timing import cpu_model  # noqa: E402
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


def print_summary(net_types, num_classes: int, repeats: int) -> None:
    """One row per net type: input size, parameters, priors, predictor ms/img on the CPU at batch 1, at the
    type's default score threshold and at 0.4. Runs are interleaved (one image per type in turn, ``repeats``
    rounds), so a load that varies during the run weighs on every type alike; the last column is the
    ratio to the first type's latency at 0.4."""
    photo_name, image = benchmark_photo()
    print(f"torch {torch.__version__}; {cpu_model()}, {torch.get_num_threads()} "
          f"threads; image {photo_name} {image.shape[1]}x{image.shape[0]}; {num_classes} classes\n")
    predictors = {}
    for net_type in net_types:
        net = load_deterministic_weights(create_net(net_type, num_classes, is_test=True))
        predictors[net_type] = create_predictor(net_type, net.to("cpu"))
    runs = {(net_type, mode): [] for net_type in net_types for mode in ("default", "0.4")}
    for round_index in range(repeats + 1):
        for net_type, predictor in predictors.items():
            for mode, threshold in (("default", predictor.filter_threshold), ("0.4", 0.4)):
                start = time.perf_counter()
                predictor.predict(image, prob_threshold=threshold)
                if round_index:  # the first round warms up
                    runs[(net_type, mode)].append(time.perf_counter() - start)
    print("| net | input | parameters (M) | priors | default score threshold | ms/img at it | ms/img at 0.4 | "
          f"vs {net_types[0]} |")
    print("|---|---|---|---|---|---|---|---|")
    reference = statistics.median(runs[(net_types[0], "0.4")])
    for net_type, predictor in predictors.items():
        net = predictor.net
        at_default, at_04 = (statistics.median(runs[(net_type, mode)]) for mode in ("default", "0.4"))
        parameters = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"| {net_type} | {net.config.size_text} | {parameters:.2f} | {net.priors.shape[0]} | "
              f"{predictor.filter_threshold} | {at_default * 1e3:.1f} | {at_04 * 1e3:.1f} | {at_04 / reference:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=list(NET_TYPES), choices=list(NET_TYPES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.01, 0.4])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--original", action="store_true", help="also time the original's predictor (batch 1)")
    parser.add_argument("--summary", action="store_true",
                        help="input, parameters, priors and CPU batch-1 latency of each net type at its defaults")
    parser.add_argument("--classes", type=int, default=21, help="with --summary: class count of the nets")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.summary:
        print_summary(args.nets, args.classes, args.repeats)
        return

    photo_name, image = benchmark_photo()
    device_names = {"cpu": f"{cpu_model()}, {torch.get_num_threads()} threads"}
    if torch.cuda.is_available():
        device_names["cuda"] = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}; image {photo_name} {image.shape[1]}x{image.shape[0]}; "
          f"devices: {', '.join(f'{k}={v}' for k, v in device_names.items() if k in args.devices)}\n")
    header = ("| net | device | threshold | batch | preprocess ms | forward ms | postprocess ms | total ms/img | "
              "detections/img |")
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
                           f"{timings['postprocess'] * 1e3:.1f} | {timings['total'] * 1e3:.1f} | "
                           f"{timings['detections']:.0f} |")
                    if args.original:
                        if batch_size == 1:
                            original = time_original(predictor, image, threshold, max(2, args.repeats // 2))
                            row += f" {original * 1e3:.0f} | {original / timings['total']:.1f}x |"
                        else:
                            row += " | |"
                    print(row, flush=True)


if __name__ == "__main__":
    main()

"""Images/s of the whole evaluation (load, predict at prob_threshold 0.01, score) against the original's loop.

Data: a synthetic VOC-format test set of 500x375 JPEGs (vision.datasets.synthetic), made in a temporary
folder unless --root names one. Nets: built with 21 classes (as for VOC: the 5 shape classes and 15
without ground truth, so prediction and NMS cost what they cost on VOC) and the deterministic weights of
../shared/reference/README.md. With such weights almost every prior passes 0.01 in every class: about
1,500 detections per image reach scoring, far more than a trained net gives, so this is a hard case.

Rows, per net and device:
- original loop: the original eval_ssd.py's way, one image at a time: dataset.get_image, then the
  original Predictor.predict (per-class Python NMS loop, benchmarks/original_predictor.py); timed on
  --baseline_images images, half before and half after the other rows (a shared machine's load then
  weighs on both sides alike), load + predict only (its scoring, slower still, is not counted);
- eval, batch 1, no workers: this project's pipeline without batching or loading workers;
- eval, batch B, W workers: as eval_ssd.py runs (load, predict, score);
- + files: the same plus writing det_test_<class>.txt, summary.json and PR plots, as eval_ssd.py does.

    python benchmarks/bench_eval.py [--num_images 500] [--nets mb1-ssd mb2-ssd-lite] [--devices cpu cuda]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.original_predictor import original_predict  # noqa: E402
from vision.datasets.synthetic import generate_voc_dataset  # noqa: E402
from vision.datasets.voc_dataset import VOCDataset  # noqa: E402
from vision.evaluation import default_batch_size, default_num_workers, evaluate, write_outputs  # noqa: E402
from vision.evaluation.inference import EVAL_PROB_THRESHOLD  # noqa: E402
from vision.ssd.registry import create_net, create_predictor  # noqa: E402
from vision.utils.reference_weights import load_deterministic_weights  # noqa: E402

NUM_CLASSES = 21


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_dataset(root: Path, num_images: int, seed: int = 0) -> VOCDataset:
    """The synthetic test set at root (written unless it already holds num_images test images)."""
    test_list = root / "ImageSets" / "Main" / "test.txt"
    if not test_list.is_file() or len(test_list.read_text().split()) != num_images:
        start = time.perf_counter()
        generate_voc_dataset(root, num_images=0, num_test=num_images, seed=seed, width=500, height=375)
        print(f"wrote {num_images} synthetic 500x375 test images in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
    return VOCDataset(root, is_test=True)


def class_names_for(dataset: VOCDataset) -> list[str]:
    """The data set's classes padded with classes that never occur, up to NUM_CLASSES."""
    names = list(dataset.class_names)
    return names + [f"unused_{index}" for index in range(len(names), NUM_CLASSES)]


def time_original_loop(predictor, dataset, num_images: int, first: int = 0) -> tuple[float, float]:
    """Seconds for the original eval's per-image loop (get_image + original predict) over images
    first..first+num_images-1, and the detections per image it gave."""
    if num_images <= 0:
        return 0.0, 0.0
    original_predict(predictor, dataset.get_image(first), prob_threshold=EVAL_PROB_THRESHOLD)  # warm-up
    _sync(predictor.device)
    detections = 0
    start = time.perf_counter()
    for index in range(first, first + num_images):
        image = dataset.get_image(index)
        boxes, labels, probs = original_predict(predictor, image, prob_threshold=EVAL_PROB_THRESHOLD)
        detections += len(labels)
    _sync(predictor.device)
    return time.perf_counter() - start, detections / num_images


def time_evaluation(predictor, dataset, class_names, batch_size: int, num_workers: int, eval_dir: Path | None):
    """(seconds for load + predict + score, seconds for writing the outputs or None, the Evaluation)."""
    predictor.predict_batch([dataset.get_image(0)] * min(batch_size, 4), prob_threshold=EVAL_PROB_THRESHOLD)
    _sync(predictor.device)
    start = time.perf_counter()
    evaluation = evaluate(predictor, dataset, class_names, batch_size=batch_size, num_workers=num_workers,
                          progress=False)
    _sync(predictor.device)
    evaluated = time.perf_counter()
    if eval_dir is None:
        return evaluated - start, None, evaluation
    write_outputs(eval_dir, evaluation, {"benchmark": True})
    return evaluated - start, time.perf_counter() - evaluated, evaluation


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} with {cpu_model()}, {os.cpu_count()} CPU cores"
    return f"{cpu_model()}, {os.cpu_count()} CPU cores, torch {torch.get_num_threads()} threads"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=500)
    parser.add_argument("--root", type=Path, default=None, help="synthetic data folder (default: a temporary one)")
    parser.add_argument("--nets", nargs="+", default=["mb1-ssd", "mb2-ssd-lite"])
    parser.add_argument("--devices", nargs="+", default=None,
                        help="default: cpu, and cuda when available")
    parser.add_argument("--batch_size", type=int, default=None, help="default: eval_ssd.py's (32 GPU, 4 CPU)")
    parser.add_argument("--num_workers", type=int, default=None, help="default: eval_ssd.py's (GPU 4, CPU 0)")
    parser.add_argument("--baseline_images", type=int, default=40,
                        help="images for the original loop (0: skip it)")
    parser.add_argument("--skip_sequential", action="store_true", help="leave out the batch-1, no-worker row")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch) / "shapes"
        dataset = make_dataset(root, args.num_images)
        class_names = class_names_for(dataset)
        rows = []
        for device_name in devices:
            device = torch.device(device_name)
            for net_type in args.nets:
                net = load_deterministic_weights(create_net(net_type, NUM_CLASSES, is_test=True)).eval()
                predictor = create_predictor(net_type, net.to(device), device=device)
                # The original loop runs before and after this project's runs (half the images each),
                # so that a change of load on a shared machine touches both sides alike.
                half = (args.baseline_images + 1) // 2
                baseline_seconds, baseline_detections = 0.0, 0.0
                if args.baseline_images:
                    seconds, per_image = time_original_loop(predictor, dataset, half, first=0)
                    baseline_seconds, baseline_detections = seconds, per_image * half
                configurations = [] if args.skip_sequential else [(1, 0, False)]
                num_workers = default_num_workers(device) if args.num_workers is None else args.num_workers
                configurations.append((args.batch_size or default_batch_size(device), num_workers, True))
                net_rows = []
                for batch_size, num_workers, with_files in configurations:
                    eval_dir = Path(scratch) / f"eval-{net_type}-{device_name}" if with_files else None
                    seconds, write_seconds, evaluation = time_evaluation(
                        predictor, dataset, class_names, batch_size, num_workers, eval_dir)
                    per_image = evaluation.records.det_labels.size / evaluation.records.num_images
                    label = f"eval, batch {batch_size}, {num_workers} workers: load + predict + score"
                    net_rows.append((net_type, device_name, label, args.num_images, seconds,
                                     args.num_images / seconds, per_image))
                    print(f"{net_type} {device_name} batch {batch_size} workers {num_workers}: inference "
                          f"{evaluation.timing.seconds:.1f} s, scoring {evaluation.scoring_seconds:.2f} s, "
                          f"mAP {evaluation.mean_ap:.4f}", file=sys.stderr)
                    if write_seconds is not None:
                        net_rows.append((net_type, device_name, "  + writing det files, JSON, PR plots",
                                         args.num_images, seconds + write_seconds,
                                         args.num_images / (seconds + write_seconds), per_image))
                if args.baseline_images:
                    rest = args.baseline_images - half
                    seconds, per_image = time_original_loop(predictor, dataset, rest, first=half)
                    baseline_seconds += seconds
                    baseline_detections += per_image * rest
                    baseline_rate = args.baseline_images / baseline_seconds
                    rows.append((net_type, device_name, "original loop (1 image, Python NMS), load + predict",
                                 args.baseline_images, baseline_seconds, baseline_rate,
                                 baseline_detections / args.baseline_images, 1.0))
                    net_rows = [row + (row[5] / baseline_rate,) for row in net_rows]
                rows.extend(net_rows)
                print(f"done {net_type} on {device_name}", file=sys.stderr)

    load_average = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        f"Machine: {'; '.join(sorted({machine_description(torch.device(d)) for d in devices}))}; "
        f"torch {torch.__version__}; {args.num_images} synthetic 500x375 images, 21 classes, deterministic weights; "
        f"load average at the end (1/5/15 min): {load_average}.",
        "",
        "| net | device | pipeline | images | seconds | images/s | speed-up vs original | detections/image |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        net_type, device_name, label, images, seconds, rate, per_image = row[:7]
        speedup = f"{row[7]:.1f}x" if len(row) > 7 else "-"
        lines.append(f"| {net_type} | {device_name} | {label} | {images} | {seconds:.1f} | {rate:.2f} | "
                     f"{speedup} | {per_image:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()

"""Images/s of the whole evaluation (load, predict at prob_threshold 0.01, score) against the original's loop.

Data: a synthetic VOC-format test set of 500x375 JPEGs (vision.datasets.synthetic), made in a temporary
folder unless --root names one. Nets: built with 21 classes (as for VOC: the 5 shape classes and 15
without ground truth, so prediction and NMS cost what they cost on VOC) and the deterministic weights of
vision/utils/reference_weights.py. With such weights almost every prior passes 0.01 in every class: about
1,500 detections per image reach scoring, far more than a trained net gives, so this is a hard case.

Rows, per net and device:
- original loop: the original eval_ssd.py's way, one image at a time: dataset.get_image, then the
  original Predictor.predict (per-class Python NMS loop, benchmarks/original_predictor.py); load +
  predict only (its scoring, slower still, is not counted), on --baseline_images of the images;
- eval, batch 1, no workers: this project's pipeline without batching;
- eval, batch B, W workers: as eval_ssd.py runs by default on that device (load, predict, score);
- + files: the same plus writing det_test_<class>.txt, summary.json and PR plots, as eval_ssd.py does.

The images are taken in chunks, and each chunk goes through every row in turn, so that a change of CPU
load weighs on all rows alike; the table gives the mean 1-minute load average seen.

    python benchmarks/bench_eval.py [--num_images 500] [--nets mb1-ssd mb2-ssd-lite] [--devices cpu cuda]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.original_predictor import original_predict  # noqa: E402
from benchmarks.timing import cpu_model  # noqa: E402
from vision.datasets.synthetic import generate_voc_dataset  # noqa: E402
from vision.datasets.voc_dataset import VOCDataset  # noqa: E402
from vision.evaluation import default_batch_size, default_num_workers, score, write_outputs  # noqa: E402
from vision.evaluation.data import make_loader  # noqa: E402
from vision.evaluation.inference import EVAL_PROB_THRESHOLD, InferenceTiming, run_inference  # noqa: E402
from vision.evaluation.records import RecordCollector  # noqa: E402
from vision.evaluation.runner import Evaluation  # noqa: E402
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


class DatasetSlice:
    """Images start..stop-1 of a data set, with the get_image / get_annotation / ids interface."""

    def __init__(self, dataset, start: int, stop: int):
        self.dataset, self.start = dataset, start
        self.ids = dataset.ids[start:stop]

    def __len__(self) -> int:
        return len(self.ids)

    def get_image(self, index):
        return self.dataset.get_image(self.start + index)

    def get_annotation(self, index):
        return self.dataset.get_annotation(self.start + index)


def original_loop(predictor, dataset, indices) -> tuple[float, int]:
    """Seconds of the original eval's per-image loop (get_image + original predict), and detections."""
    detections = 0
    _sync(predictor.device)
    start = time.perf_counter()
    for index in indices:
        boxes, labels, probs = original_predict(predictor, dataset.get_image(index),
                                                prob_threshold=EVAL_PROB_THRESHOLD)
        detections += len(labels)
    _sync(predictor.device)
    return time.perf_counter() - start, detections


def inference_chunk(predictor, chunk, collector, batch_size: int, num_workers: int) -> float:
    """Seconds to load and predict one chunk into the collector (this project's loop)."""
    _sync(predictor.device)
    start = time.perf_counter()
    run_inference(predictor, make_loader(chunk, batch_size, num_workers), collector, progress=False)
    _sync(predictor.device)
    return time.perf_counter() - start


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} with {cpu_model()}, {os.cpu_count()} CPU cores"
    return f"{cpu_model()}, {os.cpu_count()} CPU cores, torch {torch.get_num_threads()} threads"


def bench_net(net_type, device, dataset, class_names, args, scratch: Path, load_samples: list) -> list[tuple]:
    """Table rows (label, images, seconds, detections per image) for one net on one device."""
    net = load_deterministic_weights(create_net(net_type, NUM_CLASSES, is_test=True)).eval()
    predictor = create_predictor(net_type, net.to(device), device=device)
    batch_size = args.batch_size or default_batch_size(device)
    num_workers = default_num_workers(device) if args.num_workers is None else args.num_workers
    configurations = {"default": (batch_size, num_workers)}
    if not args.skip_sequential:
        configurations["sequential"] = (1, 0)
    collectors = {name: RecordCollector() for name in configurations}
    seconds = {name: 0.0 for name in configurations}
    baseline_seconds, baseline_detections, baseline_images = 0.0, 0, 0

    num_images = len(dataset)
    chunk_starts = list(range(0, num_images, args.chunk))
    baseline_per_chunk = -(-args.baseline_images // len(chunk_starts))  # ceiling
    original_predict(predictor, dataset.get_image(0), prob_threshold=EVAL_PROB_THRESHOLD)  # warm-ups
    predictor.predict_batch([dataset.get_image(0)] * batch_size, prob_threshold=EVAL_PROB_THRESHOLD)
    for start in chunk_starts:
        chunk = DatasetSlice(dataset, start, min(start + args.chunk, num_images))
        for name, (chunk_batch, chunk_workers) in configurations.items():
            seconds[name] += inference_chunk(predictor, chunk, collectors[name], chunk_batch, chunk_workers)
        todo = min(baseline_per_chunk, args.baseline_images - baseline_images, len(chunk))
        if todo > 0:
            spent, found = original_loop(predictor, dataset, range(start, start + todo))
            baseline_seconds, baseline_detections, baseline_images = (
                baseline_seconds + spent, baseline_detections + found, baseline_images + todo)
        load_samples.append(os.getloadavg()[0])
        print(f"{net_type} {device}: {start + len(chunk)}/{num_images} images", file=sys.stderr)

    rows = []
    if baseline_images:
        rows.append(("original loop (1 image, Python NMS): load + predict", baseline_images, baseline_seconds,
                     baseline_detections / baseline_images))
    for name in sorted(configurations, reverse=True):  # sequential first
        chunk_batch, chunk_workers = configurations[name]
        records = collectors[name].records()
        start = time.perf_counter()
        voc, coco = score(records, class_names)
        scoring = time.perf_counter() - start
        total = seconds[name] + scoring
        per_image = records.det_labels.size / records.num_images
        rows.append((f"eval, batch {chunk_batch}, {chunk_workers} workers: load + predict + score",
                     records.num_images, total, per_image))
        print(f"{net_type} {device} {name}: inference {seconds[name]:.1f} s, scoring {scoring:.2f} s, "
              f"mAP {voc.mean_ap:.4f}", file=sys.stderr)
        if name == "default":
            evaluation = Evaluation(class_names, "voc", records, InferenceTiming(records.num_images, seconds[name]),
                                    scoring, voc, coco)
            start = time.perf_counter()
            write_outputs(scratch / f"eval-{net_type}-{device.type}", evaluation, {"benchmark": True})
            rows.append(("  + writing det files, JSON, PR plots", records.num_images,
                         total + time.perf_counter() - start, per_image))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=500)
    parser.add_argument("--root", type=Path, default=None, help="synthetic data folder (default: a temporary one)")
    parser.add_argument("--nets", nargs="+", default=["mb1-ssd", "mb2-ssd-lite"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--batch_size", type=int, default=None, help="default: eval_ssd.py's (32 GPU, 4 CPU)")
    parser.add_argument("--num_workers", type=int, default=None, help="default: eval_ssd.py's (GPU 4, CPU 0)")
    parser.add_argument("--baseline_images", type=int, default=40, help="images for the original loop (0: skip)")
    parser.add_argument("--chunk", type=int, default=50, help="images per round of all rows")
    parser.add_argument("--skip_sequential", action="store_true", help="leave out the batch-1, no-worker row")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    devices = [torch.device(name) for name in (args.devices or (["cpu", "cuda"] if torch.cuda.is_available()
                                                                 else ["cpu"]))]
    lines = []
    load_samples: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch) / "shapes"
        dataset = make_dataset(root, args.num_images)
        class_names = class_names_for(dataset)
        for device in devices:
            for net_type in args.nets:
                rows = bench_net(net_type, device, dataset, class_names, args, Path(scratch), load_samples)
                baseline_rate = rows[0][1] / rows[0][2] if rows[0][0].startswith("original") else None
                for label, images, seconds, per_image in rows:
                    rate = images / seconds
                    speedup = f"{rate / baseline_rate:.1f}x" if baseline_rate else "-"
                    lines.append(f"| {net_type} | {device.type} | {label} | {images} | {seconds:.1f} | {rate:.2f} | "
                                 f"{speedup} | {per_image:.0f} |")
    header = [
        f"Machine: {'; '.join(sorted({machine_description(device) for device in devices}))}; "
        f"torch {torch.__version__}; {args.num_images} synthetic 500x375 images, 21 classes, deterministic "
        f"weights; mean 1-minute load average during the run: {statistics.mean(load_samples):.2f}.",
        "",
        "| net | device | pipeline | images | seconds | images/s | speed-up vs original | detections/image |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    table = "\n".join(header + lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()

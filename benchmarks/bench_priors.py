"""Small objects: the net type's priors against priors fitted to the data (``--priors auto``), and the
training recipe, on the synthetic mixed-size set (a small, a middle and a large class:
``vision.datasets.synthetic --mixed_sizes``), the small-object set (``--small_objects``) and, with ``--voc``,
the genuine VOC sample.

    python benchmarks/bench_priors.py --coverage_only [--voc ../shared/datasets/voc2007-sample]
    python benchmarks/bench_priors.py [--net mb2-ssd-lite] [--epochs 20] [--runs default_300,auto_512,...]

1. Coverage, per class: the share of training boxes with a prior at IoU >= 0.5 and the median best IoU,
   with the net type's priors and fitted ones, at 300 and 512, and the size the tool recommends.
2. Training from scratch on the mixed-size set (``--num_images`` train, ``--num_test`` test images): SGD,
   cosine over the run, the SSD augmentation, ``--batch_size`` and ``--lr``; each run's VOC07 mAP and
   per-class AP on the test split (best validation weights), its wall time and images/s. The runs:

   - ``default_512``: the net type's priors at 512 (the size ``--priors auto`` recommends for this set),
     ``--epochs`` epochs;
   - ``auto_512``: ``--priors auto`` at 512, the same epochs (so the same time);
   - ``default_300_same_time``: the net type's priors at 300 for the epochs that take the time of
     ``--epochs`` at 512 (the per-image cost of each size measured first, interleaved);
   - ``auto_512_warmup``, ``auto_512_ema``: each recipe change on its own on ``auto_512`` (a 1-epoch
     warmup; an EMA of the weights, decay 0.999);
   - ``pretrained_default`` / ``pretrained_auto``: fine-tuning from an SSD trained on the shapes set at 512
     with the net type's priors, with those priors or with fitted ones (does its regression head recover?),
     ``--finetune_epochs`` epochs.

Runs are cached under ``--work`` (a run whose ``summary.json`` exists is read back), so a table can be
rebuilt without training again. Prints markdown tables; the header names the CPU, cores and versions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import cpu_model  # noqa: E402
from vision.cli.train_ssd import main as train_main  # noqa: E402
from vision.datasets import build_dataset  # noqa: E402
from vision.datasets.boxes import relative_boxes  # noqa: E402
from vision.datasets.synthetic import MIXED_SIZES, SMALL_OBJECTS, generate_voc_dataset  # noqa: E402
from vision.evaluation.runner import evaluate  # noqa: E402
from vision.ssd.prior_choice import choose_priors  # noqa: E402
from vision.ssd.registry import create_predictor  # noqa: E402
from vision.ssd.weights import load_net  # noqa: E402
from vision.utils.labels import read_label_file  # noqa: E402

RUNS = ("default_512", "auto_512", "default_300_same_time", "auto_512_warmup", "auto_512_ema",
        "pretrained_default", "pretrained_auto")


def header() -> str:
    import onnxruntime

    return (f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}")


def ensure_data(root: Path, num_images: int, num_test: int, seed: int, preset: dict) -> Path:
    if not (root / "labels.txt").exists():
        generate_voc_dataset(root, num_images=num_images, num_test=num_test, seed=seed,
                             num_workers=os.cpu_count() or 1, **preset)
    return root


def coverage_table(name: str, root: Path, net: str, sizes: Sequence[int]) -> List[str]:
    """Markdown rows: per class, the covered share (and median best IoU) of the default and fitted priors."""
    dataset, class_names = build_dataset("auto", [str(root)])
    boxes, labels = relative_boxes(dataset)
    rows = []
    advice = ""
    results: Dict[str, dict] = {}
    for size in sizes:
        for mode in ("default", "auto"):
            start = time.perf_counter()
            choice = choose_priors(mode, net, (size, size), boxes, labels, class_names, advise=(mode == "auto"))
            results[f"{mode} {size}"] = {"coverage": choice.coverage, "seconds": time.perf_counter() - start}
            if mode == "auto" and choice.advice and not advice:
                advice = f"{choice.advice[-1]} (for auto at {size})"
    columns = list(results)
    rows.append(f"| {name} class | boxes | " + " | ".join(f"{column} (median IoU)" for column in columns) + " |")
    rows.append("|---|---|" + "---|" * len(columns))
    first = results[columns[0]]["coverage"]
    for cls in first.class_names:
        coverages = [results[column]["coverage"] for column in columns]
        cells = [f"{coverage.covered[cls]:.1%} ({coverage.median_best_iou[cls]:.2f})" for coverage in coverages]
        rows.append(f"| {cls} | {first.boxes[cls]} | " + " | ".join(cells) + " |")
    fit_seconds = max(results[column]["seconds"] for column in columns if column.startswith("auto"))
    rows.append(f"\n{len(boxes)} boxes; a fit (with its advice) took at most {fit_seconds:.1f} s. "
                + (advice if advice else "Every class covered by a fit at 300."))
    return rows


def fit_timing(net: str, count: int = 100_000, seed: int = 0) -> str:
    """The time of ``--priors auto`` on ``count`` boxes (three classes of 5-8 %, 12-25 % and 40-80 % of the
    image) at 300 and 512, the fit and the coverage of every box before and after included."""
    from vision.ssd.prior_choice import fit_for

    rng = np.random.default_rng(seed)
    labels = rng.integers(1, 4, count)
    side = np.select([labels == 1, labels == 2], [rng.uniform(0.05, 0.08, count), rng.uniform(0.12, 0.25, count)],
                     rng.uniform(0.4, 0.8, count))
    width, height = side, np.minimum(side * np.exp(rng.normal(0, 0.25, count)).clip(0.5, 2), 0.95)
    centre_x, centre_y = rng.uniform(width / 2, 1 - width / 2), rng.uniform(height / 2, 1 - height / 2)
    boxes = np.clip(np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2,
                              centre_y + height / 2], 1), 0, 1)
    parts = []
    for size in (300, 512):
        start = time.perf_counter()
        fit = fit_for(net, (size, size), boxes, labels, ["BACKGROUND", "small", "middle", "large"], seed=seed)
        parts.append(f"{size}: {time.perf_counter() - start:.1f} s (small class {fit.before.covered['small']:.1%} -> "
                     f"{fit.after.covered['small']:.1%})")
    return f"--priors auto on {count} boxes: " + "; ".join(parts)


def train_run(name: str, work: Path, data: Path, shapes: Optional[Path], net: str, epochs: int, batch_size: int,
              lr: float, same_time_epochs: Optional[int]) -> dict:
    """Train run ``name`` (cached in ``work/name``) and score it on the test split."""
    folder = work / name
    summary_path = folder / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    size = 300 if "_300" in name else 512
    run_epochs = same_time_epochs if name.endswith("_same_time") else epochs
    flags = ["--datasets", str(data), "--validation_dataset", str(data), "--net", net, "--batch_size",
             str(batch_size), "--lr", str(lr), "--scheduler", "cosine", "--t_max", str(run_epochs), "--num_epochs",
             str(run_epochs), "--validation_epochs", str(max(1, run_epochs // 4)), "--num_workers", "2",
             "--checkpoint_folder", str(folder), "--overwrite", "--no_progress", "--seed", "0", "--use_cuda",
             "false", "--resolution", str(size), "--debug_steps", "0"]
    if "auto" in name:
        flags += ["--priors", "auto"]
    if name.endswith("_warmup"):
        flags += ["--warmup_epochs", "1"]
    if name.endswith("_ema"):
        flags += ["--ema_decay", "0.999"]
    if name.startswith("pretrained"):
        flags += ["--pretrained_ssd", str(pretrained_ssd(work, shapes, net, batch_size, lr))]
    start = time.perf_counter()
    if train_main(flags) != 0:
        raise SystemExit(f"bench_priors: run {name} failed")
    seconds = time.perf_counter() - start
    summary = score(folder, data, net, size)
    summary.update(name=name, epochs=run_epochs, seconds=seconds, size=size,
                   images_per_second=run_epochs * len(build_dataset("auto", [str(data)])[0]) / seconds)
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def seconds_per_image(net: str, size: int, batch_size: int, rounds: int = 3) -> float:
    """Median seconds per image of a training step (forward, loss, backward, SGD step) at ``size``."""
    from vision.nn.multibox_loss import MultiboxLoss
    from vision.ssd.registry import create_net

    model = create_net(net, 4, image_size=size)
    config = model.config
    criterion = MultiboxLoss(config.priors, config.match_iou_threshold, config.neg_pos_ratio, config.center_variance,
                             config.size_variance, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    images = torch.randn(batch_size, 3, size, size)
    labels = torch.randint(0, 4, (batch_size, config.num_priors))
    locations = torch.randn(batch_size, config.num_priors, 4)
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        confidence, predicted = model(images)
        loss = sum(criterion(confidence, predicted, labels, locations))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append((time.perf_counter() - start) / batch_size)
    return float(np.median(times[1:]))


def pretrained_ssd(work: Path, shapes: Path, net: str, batch_size: int, lr: float) -> Path:
    """An SSD trained with the net type's priors on the shapes set at 512: what fine-tuning starts from."""
    folder = work / "pretrained_on_shapes"
    if not (folder / "last.pth").exists():
        flags = ["--datasets", str(shapes), "--net", net, "--batch_size", str(batch_size), "--lr", str(lr),
                 "--scheduler", "cosine", "--t_max", "6", "--num_epochs", "6", "--num_workers", "2",
                 "--checkpoint_folder", str(folder), "--no_progress", "--seed", "0", "--use_cuda", "false",
                 "--resolution", "512", "--debug_steps", "0", "--overwrite"]
        if train_main(flags) != 0:
            raise SystemExit("bench_priors: the pretraining run failed")
    return folder / "last.pth"


def score(folder: Path, data: Path, net: str, size: int) -> dict:
    """VOC07 mAP and per-class AP of the run's best weights (else its last) on the test split."""
    model = folder / "best.pth" if (folder / "best.pth").exists() else folder / "last.pth"
    class_names = read_label_file(folder / "labels.txt")
    dataset, _ = build_dataset("auto", [str(data)], is_test=True)
    model_net = load_net(net, str(model), len(class_names))
    predictor = create_predictor(net, model_net.eval(), device="cpu")
    result = evaluate(predictor, dataset, class_names, batch_size=8, num_workers=0, progress=False)
    return {"model": model.name, "mean_ap": float(result.mean_ap),
            "class_ap": {item.name: float(item.ap) for item in result.voc.classes}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coverage_only", action="store_true", help="print the coverage tables alone (seconds)")
    parser.add_argument("--voc", default=None, help="a VOC root to measure too (the genuine VOC sample)")
    parser.add_argument("--net", default="mb2-ssd-lite")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the runs at 512")
    parser.add_argument("--finetune_epochs", type=int, default=4, help="epochs of the fine-tuning runs")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--num_images", type=int, default=300, help="mixed-size training images")
    parser.add_argument("--num_test", type=int, default=72)
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--work", default="/tmp/ssd-bench-priors", help="data and runs (reused when present)")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(args.work)
    mixed = ensure_data(work / "mixed", args.num_images, args.num_test, 1, MIXED_SIZES)
    small = ensure_data(work / "small", args.num_images, args.num_test, 2, SMALL_OBJECTS)
    print(header(), flush=True)
    print(f"\nPrior coverage ({args.net}), share of the training boxes with a prior at IoU >= 0.5:\n")
    sets = [("mixed-size set", mixed), ("small-object set", small)]
    if args.voc:
        sets.append(("VOC sample", Path(args.voc)))
    for name, root in sets:
        print("\n".join(coverage_table(name, root, args.net, (300, 512))) + "\n", flush=True)
    print(fit_timing(args.net) + "\n", flush=True)
    if args.coverage_only:
        return 0
    runs = [run for run in args.runs.split(",") if run]
    shapes = ensure_data(work / "shapes", args.num_images, args.num_test, 3, {"width": 640, "height": 480})
    results = []
    same_time = None
    if any(run.endswith("_same_time") for run in runs):
        costs = {size: [] for size in (300, 512)}
        for _ in range(2):  # interleaved, so a change of load hits both sizes
            for size in costs:
                costs[size].append(seconds_per_image(args.net, size, args.batch_size))
        ratio = float(np.median(costs[512]) / np.median(costs[300]))
        same_time = max(1, int(round(args.epochs * ratio)))
        print(f"a training image costs {ratio:.2f}x as much at 512 as at 300: {same_time} epochs at 300 take the "
              f"time of {args.epochs} at 512", flush=True)
    for name in runs:
        epochs = args.finetune_epochs if name.startswith("pretrained") else args.epochs
        results.append(train_run(name, work, mixed, shapes, args.net, epochs, args.batch_size, args.lr, same_time))
        print(f"{name}: mAP {results[-1]['mean_ap']:.3f}", flush=True)
    class_names = list(results[0]["class_ap"]) if results else []
    print(f"\nTraining from scratch on the mixed-size set ({args.net}, batch {args.batch_size}, lr {args.lr}, "
          f"cosine; scored on {args.num_test} test images with the best validation weights):\n")
    print("| run | input | epochs | wall time | images/s | mAP | " + " | ".join(f"AP {c}" for c in class_names) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(class_names))
    for result in results:
        cells = " | ".join(f"{result['class_ap'][c]:.3f}" for c in class_names)
        print(f"| {result['name']} | {result['size']} | {result['epochs']} | {result['seconds'] / 60:.1f} min | "
              f"{result['images_per_second']:.2f} | {result['mean_ap']:.3f} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

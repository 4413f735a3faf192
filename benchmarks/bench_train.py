"""Training benchmarks: data-pipeline and training throughput, and the learning check.

    python benchmarks/bench_train.py throughput [--nets mb1-ssd-lite mb2-ssd-lite] [--steps 5]
    python benchmarks/bench_train.py learning --data /tmp/shapes2000 [--epochs 8] [-- extra train_ssd flags]

``throughput`` prints a markdown table: images/s of one data-loading worker (decode + SSD augmentation +
MatchPrior at 300x300) and of training steps (forward, backward, SGD) on the CPU (batch 16, float32) and,
when CUDA is available, on the GPU (batch 64, with and without ``--amp`` bf16 + ``--channels_last``).

``learning`` makes a synthetic set of 2000 trainval + 200 test images (5 classes, 1-4 objects each) when
``--data`` is missing, trains mb1-ssd-lite from scratch with ``train_ssd.py``, then evaluates VOC07 mAP on
the test split; it prints the training wall time, the mAP per validation epoch and the final mAP.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision.datasets import build_dataset  # noqa: E402
from vision.datasets.synthetic import generate_voc_dataset  # noqa: E402
from vision.nn.multibox_loss import MultiboxLoss  # noqa: E402
from vision.ssd.registry import create_net, get_net_type  # noqa: E402
from vision.ssd.ssd import MatchPrior  # noqa: E402
from vision.transforms import TrainAugmentation  # noqa: E402


def pipeline_images_per_second(data: Path, net_type: str, count: int) -> float:
    """One worker's rate: read + augment + encode targets, torch at one thread as in the workers."""
    config = get_net_type(net_type).config
    dataset, _ = build_dataset("voc", [str(data)], transform=TrainAugmentation(config.image_size, config.image_mean, config.image_std),
                               target_transform=MatchPrior(config.priors, config.center_variance, config.size_variance, 0.5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index in range(min(5, len(dataset))):
            dataset[index]
        start = time.perf_counter()
        for index in range(count):
            dataset[index % len(dataset)]
        return count / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def training_images_per_second(net_type: str, device: torch.device, batch_size: int, steps: int, amp: bool = False,
                               channels_last: bool = False) -> float:
    """Forward + backward + SGD step on fixed random batches (data loading excluded)."""
    config = get_net_type(net_type).config
    net = create_net(net_type, 6).to(device).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    criterion = MultiboxLoss(config.priors, 0.5, 3, 0.1, 0.2, device=device)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    width, height = config.image_size
    images = torch.randn(batch_size, 3, height, width, generator=generator).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    num_priors = config.priors.shape[0]
    labels = torch.randint(0, 6, (batch_size, num_priors), generator=generator).to(device)
    labels[torch.rand(batch_size, num_priors, generator=generator).to(device) < 0.95] = 0
    locations = torch.randn(batch_size, num_priors, 4, generator=generator).to(device)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            confidence, predicted = net(images)
        regression, classification = criterion(confidence.float(), predicted.float(), labels, locations)
        (regression + classification).backward()
        optimizer.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def throughput(args: argparse.Namespace) -> None:
    data = Path(args.data)
    if not (data / "labels.txt").exists():
        generate_voc_dataset(data, num_images=64, num_test=8, seed=0)
    print(f"torch {torch.__version__}; CPU {platform.machine()} with {torch.get_num_threads()} threads"
          + (f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "") + "\n")
    print("| net | data pipeline img/s per worker | CPU train img/s (batch 16, fp32) |"
          + (" GPU train img/s (batch 64, fp32) | GPU train img/s (batch 64, --amp --channels_last) |" if torch.cuda.is_available() else ""))
    print("|---|---|---|" + ("---|---|" if torch.cuda.is_available() else ""))
    for net_type in args.nets:
        row = f"| {net_type} | {pipeline_images_per_second(data, net_type, args.pipeline_images):.0f} | "
        row += f"{training_images_per_second(net_type, torch.device('cpu'), 16, args.steps):.1f} |"
        if torch.cuda.is_available():
            cuda = torch.device("cuda")
            row += f" {training_images_per_second(net_type, cuda, 64, args.gpu_steps):.0f} |"
            row += f" {training_images_per_second(net_type, cuda, 64, args.gpu_steps, amp=True, channels_last=True):.0f} |"
        print(row, flush=True)


def learning(args: argparse.Namespace, train_flags: list) -> None:
    from vision.cli.train_ssd import main as train_main
    from vision.evaluation.runner import evaluate
    from vision.ssd.registry import create_predictor

    data = Path(args.data)
    if not (data / "labels.txt").exists():
        print(f"generating 2000 + 200 synthetic images in {data} ...", flush=True)
        generate_voc_dataset(data, num_images=2000, num_test=200, seed=2026, min_objects=1, max_objects=4)
    checkpoints = Path(args.checkpoint_folder)
    flags = ["--datasets", str(data), "--net", "mb1-ssd-lite", "--num_epochs", str(args.epochs),
             "--checkpoint_folder", str(checkpoints), "--seed", "0", "--no_progress"] + train_flags
    print("train_ssd.py " + " ".join(flags), flush=True)
    start = time.perf_counter()
    code = train_main(flags)
    minutes = (time.perf_counter() - start) / 60
    if code != 0:
        raise SystemExit(f"training failed with exit status {code}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    test_set, class_names = build_dataset("voc", [str(data)], is_test=True)
    net = create_net("mb1-ssd-lite", len(class_names), is_test=True)
    net.load(str(checkpoints / "last.pth"))
    result = evaluate(create_predictor("mb1-ssd-lite", net.to(device)), test_set, class_names, progress=False)
    history = [json.loads(line) for line in (checkpoints / "history.jsonl").read_text().splitlines()]
    print(f"\ntraining wall time: {minutes:.1f} min on {device} ({args.epochs} epochs; "
          f"{np.mean([len(test_set)]):.0f} test images)")
    print("per-epoch training loss: " + ", ".join(f"{r['train_loss']:.2f}" for r in history))
    print(f"VOC07 mAP on the test split: {result.mean_ap:.4f}")
    print("per class: " + ", ".join(f"{n} {ap:.3f}" for n, ap in zip(class_names[1:], result.per_class_ap)))


def main() -> None:
    argv = sys.argv[1:]
    train_flags = []
    if "--" in argv:
        split = argv.index("--")
        argv, train_flags = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("throughput")
    speed.add_argument("--nets", nargs="+", default=["mb1-ssd-lite", "mb2-ssd-lite"])
    speed.add_argument("--data", default="/tmp/ssd-bench-shapes")
    speed.add_argument("--steps", type=int, default=3)
    speed.add_argument("--gpu_steps", type=int, default=20)
    speed.add_argument("--pipeline_images", type=int, default=200)
    learn = commands.add_parser("learning")
    learn.add_argument("--data", default="/tmp/ssd-shapes-2000")
    learn.add_argument("--epochs", type=int, default=8)
    learn.add_argument("--checkpoint_folder", default="/tmp/ssd-learning-check")
    args = parser.parse_args(argv)
    if args.command == "throughput":
        throughput(args)
    else:
        learning(args, train_flags)


if __name__ == "__main__":
    main()

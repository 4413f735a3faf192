"""Input size against small objects: the same net trained at 300x300 and at 512x512 on the same synthetic
small-object set (640x480 images, 10-40 pixel objects; ``vision.datasets.synthetic --small_objects``),
for the same epochs, then scored on the same test images.

    python benchmarks/bench_resolution.py [--net mb1-ssd-lite] [--sizes 300 512] [--num_images 400]
        [--num_test 60] [--epochs 3] [--batch_size 8] [--lr 0.03] [--data /tmp/ssd-small-objects]

Prints how well each size's priors cover the test objects (``--coverage_only``: that alone, in seconds), then
a markdown table: per size, training images/s, VOC07 mAP and per-class AP (IoU 0.5), and COCO's
AP for small objects (area below 32x32 pixels of the original image) at IoU 0.5 and over 0.5:0.95.
Training: SGD (momentum 0.9, weight decay 5e-4), cosine schedule, no augmentation (see the learning check
in docs/benchmarks.md for why), from scratch, seeded. Sizes are N or WxH.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import cpu_model  # noqa: E402
from vision.datasets import build_dataset, collate_training_batch  # noqa: E402
from vision.datasets.boxes import relative_boxes  # noqa: E402
from vision.datasets.synthetic import SHAPE_CLASSES, SMALL_OBJECTS, generate_voc_dataset  # noqa: E402
from vision.evaluation.coco import to_coco_ground_truth  # noqa: E402
from vision.evaluation.runner import evaluate  # noqa: E402
from vision.nn.multibox_loss import MultiboxLoss  # noqa: E402
from vision.ssd.coverage import best_prior_ious  # noqa: E402
from vision.ssd.registry import create_net, create_predictor, net_config  # noqa: E402
from vision.ssd.ssd import MatchPrior  # noqa: E402
from vision.training.loops import train_one_epoch  # noqa: E402
from vision.transforms import TestTransform  # noqa: E402
from vision.utils.image_size import parse_resolution  # noqa: E402

SMALL_AREA = 32 ** 2  # COCO's "small": below 32x32 pixels


def small_object_ap(records, class_names) -> tuple:
    """COCO AP of objects with area below 32x32 pixels (pycocotools' area range "small"): ``(AP@0.5,
    AP@[.5:.95])``; nan when the test set has no small object."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = to_coco_ground_truth(records, class_names)
        ground_truth.createIndex()
        keep = records.det_labels >= 1
        boxes = records.det_boxes[keep].astype(np.float64)
        detections = np.concatenate([records.det_image[keep, None].astype(np.float64), boxes[:, :2],
                                     boxes[:, 2:] - boxes[:, :2], records.det_scores[keep, None].astype(np.float64),
                                     records.det_labels[keep, None].astype(np.float64)], axis=1)
        if detections.shape[0] == 0:
            return 0.0, 0.0
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(detections), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 1, -1]  # (IoU, recall, class) for area "small", 100 dets
    at_50 = precision[0][precision[0] > -1]
    return (float(at_50.mean()) if at_50.size else float("nan"),
            float(evaluator.stats[3]) if evaluator.stats[3] > -1 else float("nan"))


def prior_coverage(net_type: str, size, dataset) -> tuple:
    """Of the data set's objects: the fraction whose best prior at ``size`` has IoU of at least the matching
    threshold (``vision.ssd.coverage``, measured as training matches), and the median best IoU."""
    config = net_config(net_type, size)
    boxes, labels = relative_boxes(dataset)
    best = best_prior_ious(boxes, config.priors).numpy()
    return float((best >= config.match_iou_threshold).mean()), float(np.median(best))


def train_and_score(args, data: Path, size) -> dict:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    net = create_net(args.net, len(SHAPE_CLASSES) + 1, image_size=size)
    net.init()
    config = net.config
    match_prior = MatchPrior(config.priors, config.center_variance, config.size_variance, config.match_iou_threshold)
    dataset, class_names = build_dataset("voc", [str(data)],
                                         transform=TestTransform(config.image_size, config.image_mean,
                                                                 config.image_std),
                                         target_transform=match_prior)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.num_workers, collate_fn=collate_training_batch,
                                         generator=torch.Generator().manual_seed(args.seed))
    criterion = MultiboxLoss(config.priors, iou_threshold=config.match_iou_threshold,
                             neg_pos_ratio=config.neg_pos_ratio, center_variance=config.center_variance,
                             size_variance=config.size_variance)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    images = seconds = 0.0
    for epoch in range(args.epochs):
        result = train_one_epoch(net, loader, criterion, optimizer, torch.device("cpu"), epoch, show_progress=False,
                                 log=lambda message: None)
        scheduler.step()
        images, seconds = images + result.images, seconds + result.seconds
        print(f"  {config.size_text}: epoch {epoch}, loss {result.loss:.3f}, "
              f"{result.images / result.seconds:.2f} images/s",
              file=sys.stderr, flush=True)
    test_set, _ = build_dataset("voc", [str(data)], is_test=True)
    evaluation = evaluate(create_predictor(args.net, net.eval()), test_set, class_names, batch_size=4, num_workers=0,
                          progress=False)
    small_50, small_50_95 = small_object_ap(evaluation.records, class_names)
    return {"size": config.size_text, "priors": config.num_priors, "images_per_second": images / max(seconds, 1e-9),
            "map": evaluation.mean_ap, "per_class": evaluation.per_class_ap, "small_50": small_50,
            "small_50_95": small_50_95}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="mb1-ssd-lite")
    parser.add_argument("--sizes", nargs="+", default=["300", "512"], help="input sizes, N or WxH")
    parser.add_argument("--data", default="/tmp/ssd-small-objects",
                        help="a VOC-format data set with a test split, or a new folder to generate the synthetic set "
                             "in")
    parser.add_argument("--num_images", type=int, default=400)
    parser.add_argument("--num_test", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--coverage_only", action="store_true",
                        help="print only how well each size's priors cover the test objects (seconds, no training)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    if data.exists() and any(data.iterdir()) and not (data / "ImageSets" / "Main" / "test.txt").exists():
        raise SystemExit(f"{data}: not a VOC-format data set with a test split (ImageSets/Main/test.txt); "
                         "give an empty or new folder to generate the synthetic set there")
    if not (data / "ImageSets" / "Main" / "test.txt").exists():
        summary = generate_voc_dataset(data, num_images=args.num_images, num_test=args.num_test, seed=args.seed,
                                       min_objects=3, max_objects=8, num_workers=2, **SMALL_OBJECTS)
        print(f"made {data}: {len(summary.trainval_ids)} + {len(summary.test_ids)} images, "
              f"{summary.num_objects} objects",
              file=sys.stderr)
    test_set, _ = build_dataset("voc", [str(data)], is_test=True)
    print(f"Prior coverage, {args.net}, the {len(test_set)} test images' objects:\n\n"
          "| input | objects with a prior at IoU >= 0.5 | median best-prior IoU |\n|---|---|---|")
    for size in args.sizes:
        matched, median = prior_coverage(args.net, parse_resolution(size), test_set)
        print(f"| {size} | {matched:.1%} | {median:.3f} |", flush=True)
    print()
    if args.coverage_only:
        return 0
    rows = [train_and_score(args, data, parse_resolution(size)) for size in args.sizes]

    print(f"{args.net}, {args.epochs} epochs on {args.num_images} images (640x480, objects 10-40 px), "
          f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| input | priors | train images/s | VOC07 mAP | small-object AP@0.5 (area < 32²) | small AP@[.5:.95] | "
          + " | ".join(SHAPE_CLASSES) + " |")
    print("|---" * (6 + len(SHAPE_CLASSES)) + "|")
    for row in rows:
        print(f"| {row['size']} | {row['priors']} | {row['images_per_second']:.2f} | {row['map']:.3f} | "
              f"{row['small_50']:.3f} | {row['small_50_95']:.3f} | "
              + " | ".join(f"{ap:.3f}" for ap in row["per_class"]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

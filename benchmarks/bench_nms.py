"""Hard-NMS decision time per image: torchvision's batched_nms against exact versions of the original's rule.

Inputs: the candidates of the predictor (the ``candidate_size`` best per class above ``prob_threshold``)
for deterministic weights (vision/utils/reference_weights.py) on generated pictures
(vision/datasets/synthetic.py). Methods, each deciding every (image, class) at once:

- ``torchvision``: ``torchvision.ops.batched_nms`` (epsilon-free IoU; not the original's decision);
- ``exact-fixed-point``: ``vision.utils.nms.padded_hard_nms_original`` (pairwise IoU matrix, greedy rule
  resolved by iterating to its fixed point; what the predictor uses);
- ``exact-rank-loop``: same matrix, the greedy rule resolved one rank at a time (K steps over all groups);
- ``torchvision+recheck``: batched_nms, then the groups holding a pair that the two IoU formulas decide
  differently are decided again exactly.

Times are per image, best of ``--repeats``: wall clock and process CPU time (all threads).
``differs`` counts images whose kept set differs from the exact one. The last two rows per setting time
the whole ``Predictor.postprocess`` (ranking, NMS, scaling) with ``exact_original_nms`` True (the default)
and False. Prints a markdown table.

    python benchmarks/bench_nms.py [--nets mb1-ssd vgg16-ssd] [--thresholds 0.01 0.4] [--images 4] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import torch
from torch import Tensor
from torchvision.ops import batched_nms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import cpu_model  # noqa: E402
from vision.datasets.synthetic import render_image  # noqa: E402
from vision.ssd.predictor import _ranked_candidates  # noqa: E402
from vision.ssd.registry import create_net, create_predictor  # noqa: E402
from vision.utils.nms import ORIGINAL_IOU_EPS, padded_hard_nms_original, pairwise_iou_original  # noqa: E402
from vision.utils.reference_weights import load_deterministic_weights  # noqa: E402


def candidate_rows(predictor, image, prob_threshold: float):
    """(boxes (R, K, 4), scores (R, K), valid (R, K)) of one image: one row per class with candidates."""
    scores, boxes = predictor.forward(predictor.preprocess([image]))
    ranked_scores, ranked_priors = _ranked_candidates(scores[:, :, 1:].transpose(1, 2), predictor.candidate_size,
                                                      prob_threshold)
    ranked_scores, ranked_priors = ranked_scores[0], ranked_priors[0]
    valid = ranked_scores > prob_threshold
    width = max(int(valid.sum(dim=1).max()), 1)
    rows = valid[:, 0]
    return boxes[0][ranked_priors[rows, :width]], ranked_scores[rows, :width], valid[rows, :width]


def torchvision_keep(boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    row_of, rank = valid.nonzero(as_tuple=True)
    kept = batched_nms(boxes[row_of, rank], scores[row_of, rank], row_of, iou_threshold)
    keep = torch.zeros_like(valid)
    keep[row_of[kept], rank[kept]] = True
    return keep


def exact_keep(boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    return padded_hard_nms_original(boxes, valid, iou_threshold)


def rank_loop_keep(boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    num_ranks = boxes.shape[1]
    better = torch.ones(num_ranks, num_ranks, dtype=torch.bool).triu(diagonal=1)
    suppresses = (pairwise_iou_original(boxes) > iou_threshold) & better
    suppressed = torch.zeros_like(valid)
    for rank in range(num_ranks):
        kept_now = valid[:, rank] & ~suppressed[:, rank]
        suppressed |= suppresses[:, rank, :] & kept_now[:, None]
    return valid & ~suppressed


def recheck_keep(boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    keep = torchvision_keep(boxes, scores, valid, iou_threshold)
    x1, y1, x2, y2 = (boxes[..., index] for index in range(4))
    overlap = (torch.clamp(torch.min(x2[:, None, :], x2[:, :, None]) - torch.max(x1[:, None, :], x1[:, :, None]),
                           min=0.0)
               * torch.clamp(torch.min(y2[:, None, :], y2[:, :, None]) - torch.max(y1[:, None, :], y1[:, :, None]),
                             min=0.0))
    areas = torch.clamp(x2 - x1, min=0.0) * torch.clamp(y2 - y1, min=0.0)
    union = areas[:, None, :] + areas[:, :, None] - overlap
    original_iou, plain_iou = overlap / (union + ORIGINAL_IOU_EPS), overlap / union
    pair_valid = valid[:, :, None] & valid[:, None, :]
    borderline = ((original_iou > iou_threshold) != (plain_iou > iou_threshold)) & pair_valid
    redo = borderline.flatten(1).any(dim=1)
    if bool(redo.any()):
        keep[redo] = padded_hard_nms_original(boxes[redo], valid[redo], iou_threshold)
    return keep


METHODS: Dict[str, Callable[..., Tensor]] = {
    "torchvision": torchvision_keep,
    "exact-fixed-point": exact_keep,
    "exact-rank-loop": rank_loop_keep,
    "torchvision+recheck": recheck_keep,
}


@torch.no_grad()
def measure(run: Callable[[], object], repeats: int):
    """Best wall-clock and best process-CPU seconds of ``run`` over ``repeats`` runs, after a warm-up.
    The CPU time (all threads) is the steadier figure on a busy machine."""
    run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["mb1-ssd", "vgg16-ssd"])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.01, 0.4])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(f"CPU: {cpu_model()}, {args.threads} threads; torch {torch.__version__}")
    print("| method | net | prob threshold | candidates / img | wall ms / img | CPU ms / img | differs from exact |")
    print("|---|---|---|---|---|---|---|")
    for net_type in args.nets:
        predictor = create_predictor(net_type, load_deterministic_weights(create_net(net_type, 21, is_test=True)))
        images = [render_image([2026, index])[0] for index in range(args.images)]
        for threshold in args.thresholds:
            with torch.no_grad():
                inputs = [candidate_rows(predictor, image, threshold) for image in images]
                exact = [exact_keep(*item, predictor.iou_threshold) for item in inputs]
            candidates = statistics.mean(int(item[2].sum()) for item in inputs)
            for name, method in METHODS.items():
                keeps = [method(*item, predictor.iou_threshold) for item in inputs]
                differs = sum(not torch.equal(keep, reference) for keep, reference in zip(keeps, exact))
                wall, cpu = measure(lambda: [method(*item, predictor.iou_threshold) for item in inputs], args.repeats)
                print(f"| {name} | {net_type} | {threshold} | {candidates:.0f} | {1e3 * wall / len(images):.2f} | "
                      f"{1e3 * cpu / len(images):.2f} | {differs} of {len(images)} |")
            with torch.no_grad():
                outputs = [predictor.forward(predictor.preprocess([image])) for image in images]
            sizes = [image.shape[:2] for image in images]
            for exact in (True, False):
                predictor.exact_original_nms = exact
                wall, cpu = measure(lambda: [predictor.postprocess(scores, boxes, [size], prob_threshold=threshold)
                                             for (scores, boxes), size in zip(outputs, sizes)], args.repeats)
                print(f"| postprocess, exact_original_nms={exact} | {net_type} | {threshold} | {candidates:.0f} | "
                      f"{1e3 * wall / len(images):.2f} | {1e3 * cpu / len(images):.2f} | |")
            predictor.exact_original_nms = True


if __name__ == "__main__":
    main()

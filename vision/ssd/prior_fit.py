"""Fitting a prior table to a data set's boxes (``--priors auto``), for a net type at an input size.

The table keeps each map's number of priors per location, so the heads keep their shapes and base-net or
pretrained weights still load; it chooses every prior's width and height (so sizes and aspect ratios) to
maximise the share of boxes that training's matching can cover, on the net's real grid:

1. start points: the net type's own table, and a k-means of the boxes' sizes in ``1 - IoU`` distance
   (boxes weighted so that every class counts alike), its centroids sorted by area and dealt to the maps
   from the finest, as many as each map has per location; the one that scores higher is kept;
2. coordinate ascent from there: one prior at a time takes, of a ladder of sizes and aspect ratios, the
   k-means centroids and small steps from its own size, the one that scores highest with the others kept,
   until a sweep changes nothing. The score is the mean over classes of the covered share (IoU >= the
   match threshold), so that every class counts, plus a tenth of the mean over classes of the mean best
   IoU, which guides the search while few boxes are covered. It never scores below its start.

Each box is scored at its nearest cell of every map (``vision.ssd.coverage.PriorGrid``): O(boxes x priors
per location) per table. Deterministic under ``seed``; at most :data:`SEARCH_BOXES` boxes (every class
kept, large classes sampled) take part in the search, so 100k boxes fit in seconds; the coverage reported
is measured on every box. Boxes are corner form relative to the image (0..1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from torch import Tensor

from vision.ssd.coverage import COVERED_SHARE, PriorCoverage, PriorGrid, prior_coverage, slot_ious
from vision.ssd.priors import FeatureMapShapes, TablePriors
from vision.utils.image_size import ImageSize

MIN_BOXES = 50  # fewer boxes than this say too little about the sizes: the net type's table is kept
SEARCH_BOXES = 12000
SWEEPS = 5
_SMALLEST = 1e-3  # a prior side, relative to the image


@dataclass(frozen=True)
class PriorFit:
    """A fitted table and the coverage before (the net type's table) and after, on every box."""

    table: TablePriors
    before: PriorCoverage
    after: PriorCoverage


class _Search:
    """The boxes of the search, their offsets from the nearest cell centre of each map, and the score of a
    table (per map an ``(A_k, 2)`` array of widths and heights) on that grid."""

    def __init__(self, boxes: np.ndarray, labels: np.ndarray, grid: PriorGrid, threshold: float):
        self.widths, self.heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        self.offsets = grid.offsets(boxes)
        self.members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
        self.threshold = threshold

    def slot_ious(self, level: int, sizes: np.ndarray) -> np.ndarray:
        """``(n, len(sizes))``: each box's IoU with a prior of each size at its nearest cell of map ``level``."""
        offset_x, offset_y = self.offsets[level]
        return slot_ious(self.widths, self.heights, offset_x, offset_y, sizes)

    def scores(self, best: np.ndarray) -> np.ndarray:
        """Score of each column of ``best`` ``(n, m)`` (boxes' best IoUs under m tables): the mean over
        classes of the covered share, plus a tenth of the mean over classes of the mean best IoU."""
        covered = np.mean([(best[members] >= self.threshold).mean(axis=0) for members in self.members], axis=0)
        closeness = np.mean([best[members].mean(axis=0) for members in self.members], axis=0)
        return covered + 0.1 * closeness

    def score(self, table: Sequence[np.ndarray]) -> float:
        best = np.max([self.slot_ious(level, sizes).max(axis=1) for level, sizes in enumerate(table)], axis=0)
        return float(self.scores(best[:, None])[0])


def _search_sample(labels: np.ndarray, rng: np.random.Generator, limit: int = SEARCH_BOXES) -> np.ndarray:
    """Indexes of at most ``limit`` boxes, every class kept: each class gets an equal share of the budget
    (a smaller class all of its boxes, its unused share going to the others)."""
    if len(labels) <= limit:
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros(len(classes), np.int64)
    remaining, open_classes = limit, list(range(len(classes)))
    while open_classes and remaining > 0:
        share = max(1, remaining // len(open_classes))
        for index in list(open_classes):
            take = min(share, counts[index] - quota[index], remaining)
            quota[index] += take
            remaining -= take
            if quota[index] >= counts[index]:
                open_classes.remove(index)
    chosen = [rng.choice(np.flatnonzero(labels == label), size=int(count), replace=False)
              for label, count in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def _kmeans_start(widths: np.ndarray, heights: np.ndarray, weights: np.ndarray, priors_per_location: Sequence[int],
                  rng: np.random.Generator, iterations: int = 30) -> List[np.ndarray]:
    """k-means of the box sizes in ``1 - IoU`` (boxes centred on each other), weighted; the centroids
    sorted by area and dealt to the maps, finest first."""
    total = int(sum(priors_per_location))
    points = np.stack([widths, heights], axis=1).astype(np.float64)
    probabilities = weights / weights.sum()
    centroids = points[rng.choice(len(points), size=1, p=probabilities)]
    while len(centroids) < total:  # k-means++: far points (in 1 - IoU) are likelier picks
        distance = 1 - _centred_iou(points, centroids).max(axis=1)
        chance = probabilities * distance
        chance = chance / chance.sum() if chance.sum() > 0 else probabilities
        centroids = np.concatenate([centroids, points[rng.choice(len(points), size=1, p=chance)]])
    for _ in range(iterations):
        nearest = _centred_iou(points, centroids).argmax(axis=1)
        for index in range(total):
            members = nearest == index
            if members.any():  # weighted geometric mean: sizes spread over orders of magnitude
                centroids[index] = np.exp(np.average(np.log(points[members]), axis=0, weights=weights[members]))
    centroids = centroids[np.argsort(centroids.prod(axis=1), kind="stable")]
    starts = np.cumsum([0, *priors_per_location])
    return [np.clip(centroids[start:end], _SMALLEST, 1.0) for start, end in zip(starts[:-1], starts[1:])]


def _centred_iou(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    inter = (np.minimum(points[:, None, 0], centroids[None, :, 0])
             * np.minimum(points[:, None, 1], centroids[None, :, 1]))
    return inter / (points.prod(axis=1)[:, None] + centroids.prod(axis=1)[None, :] - inter)


def _candidate_sizes(widths: np.ndarray, heights: np.ndarray, kmeans: Sequence[np.ndarray]) -> np.ndarray:
    """``(m, 2)`` sizes a prior may take: a log-spaced ladder of sides from the smallest box's to the whole
    image at aspect ratios 1/3..3, and the k-means centroids (which follow the data's own aspects)."""
    smallest = max(_SMALLEST, float(np.quantile(np.sqrt(widths * heights), 0.01)) / 1.5)
    sides = np.geomspace(smallest, 1.0, 20)
    ratios = np.array([1 / 3, 1 / 2, 2 / 3, 1.0, 1.5, 2.0, 3.0])
    ladder = np.stack([(sides[:, None] * np.sqrt(ratios)[None, :]).ravel(),
                       (sides[:, None] / np.sqrt(ratios)[None, :]).ravel()], axis=1)
    return np.clip(np.concatenate([ladder, *kmeans]), _SMALLEST, 1.0)


def _coordinate_ascent(search: _Search, start: List[np.ndarray], candidates: np.ndarray,
                       sweeps: int = SWEEPS) -> List[np.ndarray]:
    """Improve ``start`` one prior at a time: each prior takes, of ``candidates`` and small steps from its
    own size, the size that scores highest with the others kept; until a sweep changes nothing."""
    table = [level.copy() for level in start]
    columns = [search.slot_ious(level, sizes) for level, sizes in enumerate(table)]  # per map (n, A_k)
    steps = np.array([(w, h) for w in (0.85, 1.0, 1.18) for h in (0.85, 1.0, 1.18) if (w, h) != (1.0, 1.0)])
    current = search.score(table)
    for _ in range(sweeps):
        changed = False
        for level in range(len(table)):
            for slot in range(len(table[level])):
                others = [np.delete(column, slot, axis=1) if index == level else column
                          for index, column in enumerate(columns)]
                rest = np.max([column.max(axis=1, initial=0.0) for column in others], axis=0)
                choices = np.clip(np.concatenate([candidates, table[level][slot] * steps]), _SMALLEST, 1.0)
                tried = search.slot_ious(level, choices)
                scores = search.scores(np.maximum(rest[:, None], tried))
                best = int(np.argmax(scores))
                if scores[best] > current + 1e-6:
                    current = float(scores[best])
                    table[level][slot] = choices[best]
                    columns[level][:, slot] = tried[:, best]
                    changed = True
        if not changed:
            break
    return table


def fit_prior_table(boxes: np.ndarray, labels: np.ndarray, class_names: Sequence[str], default_priors: Tensor,
                    feature_map_shapes: FeatureMapShapes, priors_per_location: Sequence[int], image_size: ImageSize,
                    threshold: float = 0.5, seed: int = 0, description: str = "") -> PriorFit:
    """Fit a table (see the module docstring) to ``boxes`` ``(n, 4)`` corner 0..1 with ``labels`` ``(n,)``
    (indexes into ``class_names``, BACKGROUND at 0) on maps of ``feature_map_shapes`` at ``image_size``;
    ``default_priors``: the net type's priors there, the first start point and the "before" coverage.
    ValueError when there are fewer than :data:`MIN_BOXES` boxes (the caller keeps the net type's table)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(boxes) < MIN_BOXES:
        raise ValueError(f"{len(boxes)} boxes are too few to fit priors to (at least {MIN_BOXES})")
    rng = np.random.default_rng(seed)
    sample = _search_sample(labels, rng)
    default_grid = PriorGrid.from_priors(default_priors, feature_map_shapes, priors_per_location)
    if default_grid is None:
        raise ValueError("the net type's priors are not laid on a grid of its maps")
    table_grid = PriorGrid.from_priors(TablePriors(tuple(tuple(map(tuple, level)) for level in default_grid.sizes))
                                       .priors(image_size, feature_map_shapes), feature_map_shapes, priors_per_location)
    search = _Search(boxes[sample], labels[sample], table_grid, threshold)
    counts = {label: count for label, count in zip(*np.unique(labels[sample], return_counts=True))}
    weights = np.array([1.0 / counts[label] for label in labels[sample]])
    kmeans = _kmeans_start(search.widths, search.heights, weights, priors_per_location, rng)
    starts = [[level.copy() for level in default_grid.sizes], kmeans]
    start = max(starts, key=search.score)
    sizes = _coordinate_ascent(search, start, _candidate_sizes(search.widths, search.heights, kmeans))
    table = TablePriors(tuple(tuple(map(tuple, level)) for level in sizes), fitted_at=image_size)
    prefix = f"{description}, " if description else ""
    before = prior_coverage(boxes, labels, class_names, default_priors, threshold, f"{prefix}the net type's priors",
                            feature_map_shapes, priors_per_location)
    after = prior_coverage(boxes, labels, class_names, table.priors(image_size, feature_map_shapes), threshold,
                           f"{prefix}priors fitted to the data", feature_map_shapes, priors_per_location)
    return PriorFit(table, before, after)


def size_reaching_coverage(fit_at: Callable[[ImageSize], PriorFit], image_size: ImageSize,
                           scales: Sequence[float] = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0),
                           share: float = COVERED_SHARE) -> Optional[Tuple[ImageSize, PriorFit]]:
    """The smallest of ``image_size`` x ``scales`` (multiples of 32 pixels) at which a fit covers every class
    at ``share`` or more, measured by fitting there (``fit_at(size)``); None when none of them does."""
    width, height = image_size
    tried = set()
    for scale in scales:
        size = (int(round(width * scale / 32)) * 32, int(round(height * scale / 32)) * 32)
        if size in tried:
            continue
        tried.add(size)
        try:
            fit = fit_at(size)
        except ValueError:  # a size the net cannot take
            continue
        if fit.after.lowest() >= share:
            return size, fit
    return None

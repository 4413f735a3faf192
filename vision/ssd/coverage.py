"""How well a net's priors can cover a data set's boxes, measured the way training matches them.

Training (``MatchPrior`` / ``box_utils.assign_priors``) makes a prior a positive of a box when their IoU —
the original's, with 1e-5 in the union — is at least the match threshold (0.5), on the real prior grid,
centres included. So the share of a class's boxes that have at least one prior at IoU >= the threshold is
the best recall matching can give that class; a box without one is matched only to the single prior
matching forces on it. :func:`prior_coverage` computes that share and the median best IoU per class.

Boxes are corner form ``[x1, y1, x2, y2]`` relative to the image (0..1): training stretches every image to
the net's input, so a box keeps these coordinates at any input size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from vision.utils.box_utils import center_form_to_corner_form, iou_of

COVERED_SHARE = 0.95  # below this share of its boxes a class is reported as poorly covered
IOU_EPS = 1e-5  # training's IoU adds it to the union (vision.utils.box_utils.iou_of)
_PAIRS_PER_CHUNK = 1 << 22  # box-prior pairs per step: bounded memory for 100k boxes on 20k priors


def best_prior_ious(boxes: np.ndarray | Tensor, priors: Tensor, grid: Optional["PriorGrid"] = None) -> Tensor:
    """The best IoU of each box with any prior, by training's IoU (``box_utils.iou_of``, float32: the very
    values matching compares with its threshold).

    boxes: ``(n, 4)`` corner form, 0..1; priors: ``(P, 4)`` center form, 0..1 (a net's ``priors``).
    Returns float32 ``(n,)``. With the priors' ``grid`` only the priors at the cells nearest to each box
    are compared (:class:`PriorGrid`), else every prior; in chunks of boxes, so memory stays bounded."""
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32) if not isinstance(boxes, Tensor) else boxes,
                            dtype=torch.float32).reshape(-1, 4)
    corner_priors = center_form_to_corner_form(priors.to(torch.float32))
    if not len(boxes):
        return torch.zeros(0)
    if grid is not None:
        candidates = torch.from_numpy(grid.candidate_indexes(boxes.numpy().astype(np.float64)))  # (n, C)
        chunk = max(1, _PAIRS_PER_CHUNK // candidates.shape[1])
        return torch.cat([iou_of(part[:, None, :], corner_priors[indexes]).max(dim=1).values
                          for part, indexes in zip(boxes.split(chunk), candidates.split(chunk))])
    chunk = max(1, _PAIRS_PER_CHUNK // max(1, corner_priors.shape[0]))
    return torch.cat([iou_of(part[:, None, :], corner_priors[None, :, :]).max(dim=1).values
                      for part in boxes.split(chunk)])


def interval_overlap(box_side: np.ndarray, prior_side: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Overlap of intervals of lengths ``box_side`` and ``prior_side`` whose centres are ``offset`` apart
    (broadcast)."""
    return np.clip(np.minimum(np.minimum(box_side, prior_side), (box_side + prior_side) / 2 - offset), 0, None)


@dataclass(frozen=True)
class PriorGrid:
    """A net's priors as what they are on each map: cell centres along x (``cols``,) and y (``rows``,) and
    the ``(A, 2)`` widths and heights every location has, all relative to the image.

    A box's best prior on a map sits at the cell whose centre is nearest to the box's, in x and in y
    separately (the overlap of two intervals of fixed lengths only shrinks as their centres part), so
    only a few locations per map and box need comparing: O(boxes x priors per location), with the same
    best IoU as comparing every prior. :meth:`candidate_indexes` takes the two nearest cells on each
    axis, so a box midway between two cells (a tie) loses nothing to rounding."""

    centers_x: Tuple[np.ndarray, ...]
    centers_y: Tuple[np.ndarray, ...]
    sizes: Tuple[np.ndarray, ...]

    @classmethod
    def from_priors(cls, priors: Tensor, feature_map_shapes: Sequence[Tuple[int, int]],
                    priors_per_location: Sequence[int]) -> Optional["PriorGrid"]:
        """The grid of ``priors`` (center form, head order: maps, rows, columns, the location's priors), or
        None when they are not one (then use :func:`best_prior_ious`)."""
        values = priors.detach().cpu().to(torch.float64).numpy()
        centers_x, centers_y, sizes, offset = [], [], [], 0
        for (rows, cols), count in zip(feature_map_shapes, priors_per_location):
            level = values[offset:offset + rows * cols * count].reshape(rows, cols, count, 4)
            offset += rows * cols * count
            xs, ys, level_sizes = level[0, :, 0, 0], level[:, 0, 0, 1], level[0, 0, :, 2:4]
            if (np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) <= 0)
                    or not np.allclose(level[..., 0], xs[None, :, None], atol=1e-7)
                    or not np.allclose(level[..., 1], ys[:, None, None], atol=1e-7)
                    or not np.allclose(level[..., 2:4], level_sizes[None, None], atol=1e-7)):
                return None
            centers_x.append(xs)
            centers_y.append(ys)
            sizes.append(level_sizes)
        if offset != len(values):
            return None
        return cls(tuple(centers_x), tuple(centers_y), tuple(sizes))

    def candidate_indexes(self, boxes: np.ndarray) -> np.ndarray:
        """int64 ``(n, C)`` indexes into the priors of the ones to compare with each box: on every map the
        priors of the 2 x 2 cells around the box's centre. boxes: ``(n, 4)`` corner 0..1."""
        center_x, center_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        columns, offset = [], 0
        for xs, ys, level in zip(self.centers_x, self.centers_y, self.sizes):
            count = len(level)
            for row in _two_nearest(center_y, ys):
                for col in _two_nearest(center_x, xs):
                    location = (row * len(xs) + col) * count + offset
                    columns.append(location[:, None] + np.arange(count)[None, :])
            offset += len(xs) * len(ys) * count
        return np.concatenate(columns, axis=1).astype(np.int64)

    def offsets(self, boxes: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Per map, each box's ``(|dx|, |dy|)`` to its nearest cell centre. boxes: ``(n, 4)`` corner 0..1."""
        center_x, center_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        return [(_distance_to_nearest(center_x, xs), _distance_to_nearest(center_y, ys))
                for xs, ys in zip(self.centers_x, self.centers_y)]

    def best_ious(self, boxes: np.ndarray, sizes: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
        """Each box's best IoU (training's) with the priors, float64 ``(n,)``; ``sizes`` replaces the
        priors' sizes per map (a candidate table on the same grid)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        best = np.zeros(len(boxes))
        for (offset_x, offset_y), level in zip(self.offsets(boxes), sizes if sizes is not None else self.sizes):
            best = np.maximum(best, slot_ious(widths, heights, offset_x, offset_y, level).max(axis=1, initial=0.0))
        return best


def slot_ious(widths: np.ndarray, heights: np.ndarray, offset_x: np.ndarray, offset_y: np.ndarray,
              sizes: np.ndarray) -> np.ndarray:
    """``(n, A)`` IoU (training's, float32) of ``n`` boxes, given by their sides and their offsets from a
    prior centre, with priors of ``sizes`` ``(A, 2)``: the inner loop of the prior fit, so computed in place."""
    widths, heights = widths.astype(np.float32)[:, None], heights.astype(np.float32)[:, None]
    prior_widths, prior_heights = (sizes[:, 0].astype(np.float32)[None, :], sizes[:, 1].astype(np.float32)[None, :])
    inter = _overlap_in_place(widths, prior_widths, offset_x.astype(np.float32)[:, None])
    inter *= _overlap_in_place(heights, prior_heights, offset_y.astype(np.float32)[:, None])
    union = widths * heights + prior_widths * prior_heights
    union -= inter
    union += np.float32(IOU_EPS)
    inter /= union
    return inter


def _overlap_in_place(box_side: np.ndarray, prior_side: np.ndarray, offset: np.ndarray) -> np.ndarray:
    overlap = box_side + prior_side
    overlap *= np.float32(0.5)
    overlap -= offset
    np.minimum(overlap, box_side, out=overlap)
    np.minimum(overlap, prior_side, out=overlap)
    np.maximum(overlap, 0, out=overlap)
    return overlap


def _two_nearest(values: np.ndarray, centers: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Indexes into ``centers`` (ascending) of the nearest centre at or below and above each value."""
    right = np.clip(np.searchsorted(centers, values), 0, len(centers) - 1)
    return np.clip(right - 1, 0, len(centers) - 1), right


def _distance_to_nearest(values: np.ndarray, centers: np.ndarray) -> np.ndarray:
    order = np.argsort(centers)
    ordered = centers[order]
    right = np.clip(np.searchsorted(ordered, values), 0, len(ordered) - 1)
    left = np.clip(right - 1, 0, len(ordered) - 1)
    return np.minimum(np.abs(values - ordered[left]), np.abs(values - ordered[right]))


@dataclass(frozen=True)
class PriorCoverage:
    """Per class (BACKGROUND excluded): ``boxes`` counted, ``covered`` the share with a prior at IoU >=
    ``threshold`` (NaN for a class without boxes), ``median_best_iou``; and what it was measured on."""

    class_names: Sequence[str]
    boxes: Dict[str, int]
    covered: Dict[str, float]
    median_best_iou: Dict[str, float]
    threshold: float
    description: str = ""  # the net, input size and prior table, for the printout

    def poorly_covered(self, share: float = COVERED_SHARE) -> List[str]:
        """Classes with boxes whose covered share is below ``share``."""
        return [name for name in self.class_names if self.boxes[name] and self.covered[name] < share]

    def lowest(self) -> float:
        """The lowest covered share over the classes that have boxes (1.0 when none has)."""
        shares = [self.covered[name] for name in self.class_names if self.boxes[name]]
        return min(shares) if shares else 1.0

    def lines(self) -> List[str]:
        """The printout: one line per class, the worst marked."""
        header = f"prior coverage ({self.description}; share of boxes with a prior at IoU >= {self.threshold:g}):"
        width = max([len(name) for name in self.class_names] + [5])
        rows = [header, f"  {'class':<{width}}  {'boxes':>7}  {'covered':>7}  {'median best IoU':>15}"]
        for name in self.class_names:
            count = self.boxes[name]
            if not count:
                rows.append(f"  {name:<{width}}  {0:>7}  {'-':>7}  {'-':>15}")
                continue
            mark = "  <- below 0.95" if self.covered[name] < COVERED_SHARE else ""
            rows.append(f"  {name:<{width}}  {count:>7}  {self.covered[name]:>7.1%}  "
                        f"{self.median_best_iou[name]:>15.3f}{mark}")
        return rows

    def to_document(self) -> dict:
        """``prior_coverage`` / ``median_best_iou`` per class for the report JSON (None for no boxes)."""
        return {"prior_coverage": {name: (round(self.covered[name], 4) if self.boxes[name] else None)
                                   for name in self.class_names},
                "median_best_iou": {name: (round(self.median_best_iou[name], 4) if self.boxes[name] else None)
                                    for name in self.class_names},
                "boxes": dict(self.boxes), "match_iou_threshold": self.threshold}


def prior_coverage(boxes: np.ndarray, labels: np.ndarray, class_names: Sequence[str], priors: Tensor,
                   threshold: float = 0.5, description: str = "",
                   feature_map_shapes: Optional[Sequence[Tuple[int, int]]] = None,
                   priors_per_location: Optional[Sequence[int]] = None) -> PriorCoverage:
    """Coverage of ``boxes`` (``(n, 4)`` corner 0..1) with ``labels`` (``(n,)`` indexes into ``class_names``,
    BACKGROUND at 0) by ``priors`` (``(P, 4)`` center form, 0..1) at the match ``threshold``. With the
    maps' shapes and priors per location the priors are taken as their grid (:class:`PriorGrid`, fast),
    else every prior is compared."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    grid = (PriorGrid.from_priors(priors, feature_map_shapes, priors_per_location)
            if feature_map_shapes is not None and priors_per_location is not None else None)
    best = best_prior_ious(boxes, priors, grid).numpy().astype(np.float64)
    return coverage_from_best_ious(best, labels, class_names, threshold, description)


def coverage_from_best_ious(best: np.ndarray, labels: np.ndarray, class_names: Sequence[str], threshold: float,
                            description: str = "") -> PriorCoverage:
    """:class:`PriorCoverage` from each box's best IoU ``(n,)`` and label ``(n,)``."""
    names = list(class_names[1:])
    counts, covered, medians = {}, {}, {}
    for index, name in enumerate(names, start=1):
        values = best[labels == index]
        counts[name] = int(values.size)
        covered[name] = float((values >= threshold).mean()) if values.size else float("nan")
        medians[name] = float(np.median(values)) if values.size else float("nan")
    return PriorCoverage(names, counts, covered, medians, float(threshold), description)

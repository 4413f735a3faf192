"""Checking a data set before training: counts, box statistics against the net's priors, and every problem.

The command is ``python -m vision.datasets.check`` (``vision.cli.check_dataset``); this module is the library:

- :func:`check_dataset` reads the data set and measures it against the priors of a net (a :class:`NetPriors`
  the caller makes, e.g. from ``vision.ssd.registry.net_config``);
- :func:`format_report` is the printout: images per split, boxes per class, images without boxes, histograms
  of box width, height and aspect ratio, how many boxes are smaller than the smallest prior (with the advice
  to raise --resolution when many are), and every problem with its file;
- :func:`write_figure` writes the report figure (class counts, box sizes and aspects against the priors',
  sample images with their boxes).

A problem is ``skipped`` when training would skip or stop at it (unreadable images, malformed annotation
files, boxes without area or wholly outside the image, unknown classes).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

from vision.datasets.annotated import DatasetContents
from vision.datasets.convert import read_contents
from vision.datasets.errors import BadImageError
from vision.datasets.images import read_rgb_image
from vision.transforms.box_ops import iou_matrix
from vision.utils.atomic import staged_path

DUPLICATE_IOU = 0.95  # two boxes of one class overlapping this much are taken as one object labelled twice
SMALL_SHARE_ADVICE = 0.1  # advise a higher --resolution when more than this share of boxes is small


@dataclass
class Problem:
    """One finding: path (the file), message, and skipped: training would skip the image or box, or stop."""

    path: str
    message: str
    skipped: bool

    def __str__(self) -> str:
        return f"{'error' if self.skipped else 'warning'}: {self.path}: {self.message}"


@dataclass
class CheckReport:
    """What check_dataset found. box_sizes: float64 (n, 2) width, height of every usable box in the
    net's input pixels (image resized to input_size); box_labels (n,); prior_sizes (P, 2) the priors'
    width, height in input pixels; smallest_prior: the smallest prior's sqrt(width * height)."""

    contents: DatasetContents
    input_size: Tuple[int, int]
    net: str
    problems: List[Problem] = field(default_factory=list)
    box_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    box_pixel_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    images_without_boxes: int = 0
    prior_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    smallest_prior: float = 0.0
    box_image_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    samples: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    advice: str = ""

    @property
    def num_small_boxes(self) -> int:
        return int((np.sqrt(self.box_sizes.prod(axis=1)) < self.smallest_prior).sum())

    def small_boxes_at(self, input_size: Tuple[int, int], smallest_prior: float) -> int:
        """How many boxes would be smaller than `smallest_prior` with images resized to `input_size`."""
        sizes = self.box_pixel_sizes * np.array(input_size) / np.maximum(self.box_image_sizes, 1)
        return int((np.sqrt(sizes.prod(axis=1)) < smallest_prior).sum())

    @property
    def has_skipped(self) -> bool:
        return any(problem.skipped for problem in self.problems)


@dataclass(frozen=True, eq=False)
class NetPriors:
    """The priors of one net at one input size. net: the net type's name (for the printout); input_size:
    (width, height) in pixels; priors: float64 (P, 4) center-form (cx, cy, w, h), 0..1 of the input."""

    net: str
    input_size: Tuple[int, int]
    priors: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """float64 (P, 2): every prior's width, height in input pixels."""
        return np.asarray(self.priors, np.float64)[:, 2:] * np.array(self.input_size, np.float64)


# (width, height) -> the same net's priors at that input size; ValueError or RuntimeError when it has none there.
PriorsAt = Callable[[Tuple[int, int]], NetPriors]


def _smallest_prior(prior_sizes: np.ndarray) -> float:
    return float(np.sqrt(prior_sizes.prod(axis=1)).min())


def _resolution_advice(report: CheckReport, priors_at: Optional[PriorsAt]) -> str:
    """Advice when more than SMALL_SHARE_ADVICE of the boxes are small: the --resolution that lowers their
    number, tried at twice the size and at the images' median aspect ratio (this toolkit scales the
    priors with the input's shorter side, so only a wider or taller input shrinks them relative to the
    image), or what else helps when no size does. `priors_at` gives the net's priors at a candidate size;
    without it there is no advice."""
    total, small = len(report.box_sizes), report.num_small_boxes
    if priors_at is None or not total or small / total <= SMALL_SHARE_ADVICE:
        return ""
    width, height = report.input_size
    aspect = float(np.median(report.box_image_sizes[:, 0] / np.maximum(report.box_image_sizes[:, 1], 1)))
    candidates = {(2 * width, 2 * height)}
    if not 0.87 < aspect < 1.15:
        short = min(width, height)
        candidates.add((int(round(short * max(aspect, 1))), int(round(short / min(aspect, 1)))))
    results = []
    for candidate in sorted(candidates):
        try:
            candidate_priors = priors_at(candidate)
        except (ValueError, RuntimeError):
            continue
        size = tuple(candidate_priors.input_size)
        results.append((report.small_boxes_at(size, _smallest_prior(candidate_priors.sizes)), size))
    share = f"{100 * small / total:.0f} % of the boxes are smaller than the smallest prior"
    better = [(count, size) for count, size in sorted(results) if count < small]
    if better:
        count, (best_width, best_height) = better[0]
        return (f"advice: {share}; raise --resolution to {best_width}x{best_height} ({count} small boxes there, "
                f"{small} at {width}x{height})")
    return (f"advice: {share}. Raising --resolution alone does not help here: the priors grow with the input "
            f"(tried {', '.join(f'{w}x{h}' for _, (w, h) in results)}); crop or tile the images, or pick a net "
            f"whose smallest prior is smaller")


def check_dataset(root, priors: NetPriors, dataset_type: str = "auto", label_file=None, num_samples: int = 3,
                  priors_at: Optional[PriorsAt] = None) -> CheckReport:
    """Read every split of the data set at `root` and every image in it (decoded, so truncated files are
    found), and report as CheckReport, box sizes measured against `priors` (images resized to its
    input_size). `priors_at` gives the same net's priors at other sizes, for the advice on --resolution
    (none without it). `num_samples`: images (with usable boxes) kept for the figure. Raises DatasetError
    for a file-level problem (malformed JSON/YAML/CSV, no annotation files), as training would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every finding is reported as a Problem instead
        contents = read_contents(root, dataset_type, label_file)
    input_size, prior_sizes = tuple(priors.input_size), priors.sizes
    report = CheckReport(contents, input_size, priors.net, prior_sizes=prior_sizes,
                         smallest_prior=_smallest_prior(prior_sizes))
    report.problems += [Problem(line.split(": ", 1)[0], f"unknown class: {line.split(': ', 1)[-1]}", True)
                        for line in contents.unknown]
    sizes, pixel_sizes, image_sizes, labels = [], [], [], []
    for image_id, entry in contents.images.items():
        if entry.malformed is not None:
            report.problems.append(Problem(str(entry.source), f"malformed annotation ({entry.malformed}); image "
                                           f"{image_id} is skipped", True))
            continue
        try:
            image = read_rgb_image(entry.image_path)
        except BadImageError as error:
            report.problems.append(Problem(str(entry.image_path), f"{error}; skipped", True))
            continue
        height, width = image.shape[:2]
        boxes = np.asarray(entry.boxes, np.float64).reshape(-1, 4)
        usable = _check_boxes(report, entry.source, image_id, boxes, entry.labels, width, height)
        if entry.size is not None and tuple(entry.size) != (width, height):
            report.problems.append(Problem(str(entry.source), f"says the image is {entry.size[0]}x{entry.size[1]} "
                                           f"but {entry.image_path.name} is {width}x{height}", False))
        kept = np.clip(boxes[usable], 0, [width, height, width, height])
        extent = kept[:, 2:] - kept[:, :2]
        pixel_sizes.append(extent)
        image_sizes.append(np.tile([width, height], (len(extent), 1)))
        sizes.append(extent * np.array(input_size) / np.array([width, height]))
        labels.append(np.asarray(entry.labels, np.int64)[usable])
        if not usable.any() and not (np.asarray(entry.labels) < 0).any():  # trains as background
            report.images_without_boxes += 1
        if len(report.samples) < num_samples and usable.any():
            report.samples.append((image, kept, labels[-1]))
    report.problems += [Problem(note.split(": ", 1)[0], note.split(": ", 1)[-1], False) for note in contents.notes]
    if sizes:
        report.box_sizes, report.box_pixel_sizes = np.concatenate(sizes), np.concatenate(pixel_sizes)
        report.box_labels = np.concatenate(labels)
        report.box_image_sizes = np.concatenate(image_sizes).astype(np.float64)
    report.advice = _resolution_advice(report, priors_at)
    return report


def _check_boxes(report: CheckReport, source, image_id: str, boxes: np.ndarray, labels: np.ndarray,
                 width: int, height: int) -> np.ndarray:
    """Problems of one image's boxes; returns the (n,) mask of boxes training keeps."""
    names = report.contents.class_names
    finite = np.isfinite(boxes).all(axis=1)
    no_area = ~finite | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    clipped = np.clip(boxes, 0, [width, height, width, height])
    outside = ~no_area & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    sticking_out = ~no_area & ~outside & (clipped != boxes).any(axis=1)
    unknown = np.asarray(labels) < 0

    def describe(mask):
        return "; ".join(f"{names[label] if label >= 0 else '?'} {np.round(box, 1).tolist()}"
                         for box, label in zip(boxes[mask], np.asarray(labels)[mask]))

    if no_area.any():
        report.problems.append(Problem(str(source), f"image {image_id}: {int(no_area.sum())} box(es) with zero or "
                                       f"negative area, dropped: {describe(no_area)}", True))
    if outside.any():
        report.problems.append(Problem(str(source), f"image {image_id}: {int(outside.sum())} box(es) outside the "
                                       f"{width}x{height} image, dropped: {describe(outside)}", True))
    if sticking_out.any():
        report.problems.append(Problem(str(source), f"image {image_id}: {int(sticking_out.sum())} box(es) reach "
                                       f"outside the {width}x{height} image, clipped: {describe(sticking_out)}",
                                       False))
    usable = ~no_area & ~outside & ~unknown
    if usable.sum() > 1:
        kept = clipped[usable].astype(np.float32)
        overlap = iou_matrix(kept, kept)
        same_class = np.asarray(labels)[usable][:, None] == np.asarray(labels)[usable][None, :]
        pairs = np.argwhere(np.triu((overlap >= DUPLICATE_IOU) & same_class, k=1))
        if len(pairs):
            shown = describe(np.flatnonzero(usable)[pairs[:, 1]])
            report.problems.append(Problem(str(source), f"image {image_id}: {len(pairs)} duplicate box(es) (IoU >= "
                                           f"{DUPLICATE_IOU} with another of the class): {shown}", False))
    return usable


def _histogram(values: np.ndarray, bins: int = 8, width: int = 40) -> List[str]:
    if values.size == 0:
        return ["  (no boxes)"]
    counts, edges = np.histogram(values, bins=bins)
    scale = width / max(1, counts.max())
    return [f"  {low:8.1f} - {high:8.1f} | {'#' * int(round(count * scale)):<{width}} {count}"
            for low, high, count in zip(edges[:-1], edges[1:], counts)]


def format_report(report: CheckReport) -> str:
    """The printout: counts, histograms, small boxes (with advice) and problems."""
    contents = report.contents
    names = contents.class_names
    lines = [f"{contents.format} data set {contents.root}: {len(contents.images)} images, {len(names) - 1} classes"]
    lines.append("images per split: " + ", ".join(f"{split} {len(ids)}" for split, ids in contents.splits.items()))
    counts = np.bincount(report.box_labels, minlength=len(names)) if report.box_labels.size else np.zeros(len(names))
    lines.append("boxes per class:")
    lines += [f"  {name:<20} {int(count)}" for name, count in zip(names[1:], counts[1:])]
    lines.append(f"images without boxes: {report.images_without_boxes}")
    pixel = report.box_pixel_sizes
    lines.append("box width (image pixels):")
    lines += _histogram(pixel[:, 0])
    lines.append("box height (image pixels):")
    lines += _histogram(pixel[:, 1])
    lines.append("box aspect ratio (width / height):")
    lines += _histogram(pixel[:, 0] / np.maximum(pixel[:, 1], 1e-9))
    small, total = report.num_small_boxes, len(report.box_sizes)
    lines.append(f"{small} of {total} boxes are smaller than the smallest prior of {report.net} at "
                 f"{report.input_size[0]}x{report.input_size[1]} ({report.smallest_prior:.0f} pixels, "
                 f"as sqrt(width * height) after resizing)")
    if report.advice:
        lines.append(report.advice)
    skipped = sum(problem.skipped for problem in report.problems)
    lines.append(f"problems: {len(report.problems)} ({skipped} that training would skip or stop at)")
    lines += [f"  {problem}" for problem in report.problems]
    return "\n".join(lines)


def write_figure(report: CheckReport, path) -> Path:
    """The report figure (PNG): class counts; box width x height and aspect ratio against the priors' (in
    the net's input pixels); a few sample images with their boxes. Written atomically; returns `path`."""
    import matplotlib  # an optional dependency, needed only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = report.contents.class_names
    columns = max(3, len(report.samples))
    figure, axes = plt.subplots(2, columns, figsize=(5 * columns, 9))
    counts = (np.bincount(report.box_labels, minlength=len(names))[1:] if report.box_labels.size
              else np.zeros(len(names) - 1))
    axes[0, 0].bar(range(len(names) - 1), counts, color="tab:blue")
    axes[0, 0].set_xticks(range(len(names) - 1), names[1:], rotation=60, ha="right", fontsize=8)
    axes[0, 0].set_title("boxes per class")
    priors = np.unique(np.round(report.prior_sizes, 1), axis=0)
    axes[0, 1].scatter(report.box_sizes[:, 0], report.box_sizes[:, 1], s=6, alpha=0.5, label="boxes")
    axes[0, 1].scatter(priors[:, 0], priors[:, 1], marker="x", color="tab:red", label="priors")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="width (input pixels)", ylabel="height (input pixels)",
                   title=f"box sizes at {report.input_size[0]}x{report.input_size[1]} ({report.net})")
    axes[0, 1].legend()
    aspects = report.box_sizes[:, 0] / np.maximum(report.box_sizes[:, 1], 1e-9)
    if aspects.size:
        axes[0, 2].hist(np.log2(aspects), bins=30, color="tab:blue", label="boxes")
    for prior_aspect in np.unique(np.round(np.log2(priors[:, 0] / priors[:, 1]), 2)):
        axes[0, 2].axvline(prior_aspect, color="tab:red", linewidth=1)
    axes[0, 2].set(xlabel="log2(width / height)", title="box aspect ratios (red: the priors')")
    for axis in axes[0, 3:]:
        axis.axis("off")
    for axis in axes[1]:
        axis.axis("off")
    for axis, (image, boxes, labels) in zip(axes[1], report.samples):
        drawn = image.copy()
        thickness = max(1, round(max(image.shape[:2]) / 300))
        for box, label in zip(np.rint(boxes).astype(int), labels):
            cv2.rectangle(drawn, tuple(box[:2].tolist()), tuple(box[2:].tolist()), (255, 40, 40), thickness)
            cv2.putText(drawn, names[label], (int(box[0]), max(10, int(box[1]) - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thickness, (255, 255, 0), thickness)
        axis.imshow(drawn)
    figure.tight_layout()
    path = Path(path)
    try:
        # The temporary name has no .png extension, so the format is named.
        with staged_path(path) as temporary:
            figure.savefig(temporary, dpi=80, format="png")
    finally:
        plt.close(figure)
    return path

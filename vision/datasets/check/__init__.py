"""Checking a data set before training: counts, box statistics and every problem, with its file.

The command is ``python -m vision.datasets.check`` (``vision.cli.check_dataset``); this module is the library,
and knows nothing of the nets:

- :func:`check_dataset` reads every split and every image (decoded, so truncated files are found) and keeps
  every usable box relative to its image; and, apart, the boxes training matches to the priors, taken by
  training's own rule (``vision.datasets.boxes``: difficult and crowd objects left out), which the command
  measures against a net's priors (``vision.ssd.prior_choice``: the prior coverage per class, the same
  table ``train_ssd.py`` prints);
- :func:`format_report` is the printout: images per split, boxes per class, images without boxes,
  histograms of box width, height and aspect ratio, and every problem with its file;
- :func:`report_document` is the same as plain values, for the JSON report beside the figure;
- :func:`write_figure` writes the report figure: class counts, box sizes and aspects against each map's
  prior sizes (given by the caller), sample images with their boxes.

A problem is ``skipped`` when training would skip or stop at it (unreadable images, malformed annotation
files, boxes without area or wholly outside the image, unknown classes).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from vision.datasets.annotated import DatasetContents, cleaned_boxes, format_box, training_split_names
from vision.datasets.boxes import image_relative_boxes, training_image_size
from vision.datasets.convert import read_contents
from vision.datasets.errors import BadImageError
from vision.datasets.images import read_rgb_image
from vision.transforms.box_ops import iou_matrix
from vision.utils.atomic import staged_path

DUPLICATE_IOU = 0.95  # two boxes of one class overlapping this much are taken as one object labelled twice


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
    """What check_dataset found. Per usable box (n of them): ``relative_boxes`` float64 (n, 4) corner form
    relative to its image (0..1), ``box_pixel_sizes`` (n, 2) width and height in image pixels,
    ``box_labels`` (n,), ``in_training`` (n,) bool: the box belongs to an image of the training split.
    ``coverage_boxes`` (m, 4), ``coverage_labels`` (m,) and ``coverage_in_training`` (m,) are the boxes
    as training measures its prior coverage (:func:`vision.datasets.boxes.image_relative_boxes`: difficult
    and crowd objects left out, relative to the annotated or header size)."""

    contents: DatasetContents
    problems: List[Problem] = field(default_factory=list)
    relative_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    box_pixel_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    in_training: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    coverage_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    coverage_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    coverage_in_training: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    images_without_boxes: int = 0
    samples: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def has_skipped(self) -> bool:
        return any(problem.skipped for problem in self.problems)

    def training_boxes(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(relative boxes (m, 4), labels (m,))`` of the training split, which training matches to the
        priors: the very boxes ``vision.datasets.boxes.relative_boxes`` gives for the training data set
        (difficult and crowd objects left out); those of every split when the set has no split training
        would use."""
        if self.coverage_in_training.any():
            return self.coverage_boxes[self.coverage_in_training], self.coverage_labels[self.coverage_in_training]
        return self.coverage_boxes, self.coverage_labels


@dataclass(frozen=True)
class PriorSizes:
    """A net's priors as the figure draws them: the net type, its input ``size`` (width, height) and, per
    map, the ``(A, 2)`` widths and heights (input pixels) of the priors of one location."""

    net: str
    input_size: Tuple[int, int]
    per_map: Tuple[np.ndarray, ...]


def check_dataset(root, dataset_type: str = "auto", label_file=None, num_samples: int = 3) -> CheckReport:
    """Read every split of the data set at `root` and every image in it, and report as CheckReport.
    `num_samples`: images (with usable boxes) kept for the figure. Raises DatasetError for a file-level
    problem (malformed JSON/YAML/CSV, no annotation files), as training would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every finding is reported as a Problem instead
        contents = read_contents(root, dataset_type, label_file)
    report = CheckReport(contents)
    report.problems += [Problem(line.split(": ", 1)[0], f"unknown class: {line.split(': ', 1)[-1]}", True)
                        for line in contents.unknown]
    training_ids = _training_ids(contents)
    relative, pixel_sizes, labels, in_training = [], [], [], []
    coverage: List[Tuple[np.ndarray, np.ndarray, bool]] = []
    classes_of_image = {}  # image id -> the classes of its usable boxes, for the classes a split lacks
    for image_id, entry in contents.images.items():
        if entry.malformed is not None:
            report.problems.append(Problem(str(entry.source), f"malformed annotation ({entry.malformed}); image "
                                           f"{image_id} is skipped", True))
            continue
        measured = _training_relative_boxes(contents, entry)
        if measured is not None:
            coverage.append(measured + (image_id in training_ids,))
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
        relative.append(kept / np.array([width, height, width, height], np.float64))
        pixel_sizes.append(kept[:, 2:] - kept[:, :2])
        labels.append(np.asarray(entry.labels, np.int64)[usable])
        in_training.append(np.full(len(kept), image_id in training_ids))
        classes_of_image[image_id] = set(labels[-1].tolist())
        if not usable.any() and not (np.asarray(entry.labels) < 0).any():  # trains as background
            report.images_without_boxes += 1
        if len(report.samples) < num_samples and usable.any():
            report.samples.append((image, kept, labels[-1]))
    report.problems += [Problem(note.split(": ", 1)[0], note.split(": ", 1)[-1], False) for note in contents.notes]
    report.problems += _classes_without_boxes(contents, classes_of_image)
    if relative:
        report.relative_boxes, report.box_pixel_sizes = np.concatenate(relative), np.concatenate(pixel_sizes)
        report.box_labels, report.in_training = np.concatenate(labels), np.concatenate(in_training)
    if coverage:
        report.coverage_boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b, _, _ in coverage])
        report.coverage_labels = np.concatenate([values for _, values, _ in coverage])
        report.coverage_in_training = np.concatenate([np.full(len(values), chosen) for _, values, chosen in coverage])
    return report


def _training_relative_boxes(contents: DatasetContents, entry) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """An image's boxes as training measures its prior coverage, by training's rule: the data set's
    cleaning (:func:`cleaned_boxes`), then :func:`vision.datasets.boxes.image_relative_boxes` at the
    annotated or header size (difficult and crowd objects left out; training has no ``--keep_difficult``).
    Unknown classes are left out (training stops at them; they are reported as problems). None when the
    size cannot be read (training skips the image too)."""
    try:
        size = training_image_size(entry.size, entry.image_path)
    except BadImageError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped boxes are reported as problems
        boxes, labels, difficult = cleaned_boxes(entry, contents.class_names)
    known = labels >= 0
    boxes, labels = image_relative_boxes(boxes[known], labels[known], difficult[known], size)
    return np.clip(boxes.astype(np.float64), 0.0, 1.0), labels


def _classes_without_boxes(contents: DatasetContents, classes_of_image: dict) -> List[Problem]:
    """A warning per split and class with no usable box in the split's readable images: training cannot
    learn such a class, and evaluation on that split gives it no AP."""
    problems = []
    for split, ids in contents.splits.items():
        present = set().union(*(classes_of_image.get(image_id, set()) for image_id in ids))
        missing = [name for label, name in enumerate(contents.class_names) if label > 0 and label not in present]
        if ids and missing:
            problems.append(Problem(str(contents.root), f"split {split}: {len(missing)} class(es) without a box: "
                                    f"{', '.join(missing)} (training cannot learn a class it never sees; "
                                    "evaluation gives it no AP)", False))
    return problems


def _training_ids(contents: DatasetContents) -> set:
    return {image_id for name in training_split_names(list(contents.splits)) for image_id in contents.splits[name]}


def _check_boxes(report: CheckReport, source, image_id: str, boxes: np.ndarray, labels: np.ndarray,
                 width: int, height: int) -> np.ndarray:
    """Problems of one image's boxes; returns the (n,) mask of boxes training keeps."""
    names = report.contents.class_names
    not_a_number = np.isnan(boxes).any(axis=1)
    finite = np.isfinite(boxes).all(axis=1)
    no_area = ~finite | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    clipped = np.clip(boxes, 0, [width, height, width, height])
    outside = ~no_area & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    sticking_out = ~no_area & ~outside & (clipped != boxes).any(axis=1)
    unknown = np.asarray(labels) < 0

    offset = 1.0 if report.contents.format == "voc" else 0.0  # shown as in the file: VOC's XML is 1-based

    def describe(mask):
        return "; ".join(f"{names[label] if label >= 0 else '?'} {format_box(box + offset)}"
                         for box, label in zip(boxes[mask], np.asarray(labels)[mask]))

    if not_a_number.any():
        report.problems.append(Problem(str(source), f"image {image_id}: {int(not_a_number.sum())} box(es) with a "
                                       f"NaN coordinate, dropped: {describe(not_a_number)}", True))
    if (no_area & ~not_a_number).any():
        report.problems.append(Problem(str(source), f"image {image_id}: {int((no_area & ~not_a_number).sum())} "
                                       f"box(es) with zero or negative area, dropped: "
                                       f"{describe(no_area & ~not_a_number)}", True))
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
    """The printout: counts, histograms and problems."""
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
    skipped = sum(problem.skipped for problem in report.problems)
    lines.append(f"problems: {len(report.problems)} ({skipped} that training would skip or stop at)")
    lines += [f"  {problem}" for problem in report.problems]
    return "\n".join(lines)


def report_document(report: CheckReport) -> dict:
    """The report as plain values (for ``dataset_report.json``): format, root, images per split, boxes per
    class, images without boxes, and the problems (file, message, whether training skips it)."""
    contents = report.contents
    names = contents.class_names
    counts = np.bincount(report.box_labels, minlength=len(names)) if report.box_labels.size else np.zeros(len(names))
    return {"format": contents.format, "root": str(contents.root), "images": len(contents.images),
            "images_per_split": {split: len(ids) for split, ids in contents.splits.items()},
            "boxes_per_class": {name: int(count) for name, count in zip(names[1:], counts[1:])},
            "images_without_boxes": report.images_without_boxes,
            "problems": [{"path": problem.path, "message": problem.message, "skipped": problem.skipped}
                         for problem in report.problems]}


def write_figure(report: CheckReport, path, priors: Optional[PriorSizes] = None) -> Path:
    """The report figure (PNG): class counts; box width x height and aspect ratios at the net's input size
    against each map's prior sizes (``priors``; without them, in image pixels, with no priors drawn); a
    few sample images with their boxes. Written atomically; returns `path`."""
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
    if priors is not None:
        extent = report.relative_boxes[:, 2:] - report.relative_boxes[:, :2]
        box_sizes = extent * np.array(priors.input_size, np.float64)
        unit, where = "input pixels", f"at {priors.input_size[0]}x{priors.input_size[1]} ({priors.net})"
    else:
        box_sizes, unit, where = report.box_pixel_sizes, "image pixels", "(image pixels)"
    for label in range(1, len(names)):
        chosen = report.box_labels == label
        if chosen.any():
            axes[0, 1].scatter(box_sizes[chosen, 0], box_sizes[chosen, 1], s=6, alpha=0.4, label=names[label])
    markers = "xo+^sv*D"
    for index, level in enumerate(priors.per_map if priors is not None else ()):
        axes[0, 1].scatter(level[:, 0], level[:, 1], marker=markers[index % len(markers)], s=40, color="black",
                           label=f"priors, map {index}")
    axes[0, 1].set(xscale="log", yscale="log", xlabel=f"width ({unit})", ylabel=f"height ({unit})",
                   title=f"box and prior sizes {where}")
    axes[0, 1].legend(fontsize=6)
    aspects = box_sizes[:, 0] / np.maximum(box_sizes[:, 1], 1e-9)
    if aspects.size:
        # Rounded: equal aspects a float's rounding apart would ask matplotlib for 30 bins in a range of 1e-16.
        axes[0, 2].hist(np.round(np.log2(aspects), 6), bins=30, color="tab:blue", label="boxes")
    prior_sizes = np.concatenate(priors.per_map) if priors is not None else np.zeros((0, 2))
    for prior_aspect in np.unique(np.round(np.log2(prior_sizes[:, 0] / prior_sizes[:, 1]), 2)):
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

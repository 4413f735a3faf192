"""What an evaluation leaves behind: the printed AP table, det_test_<class>.txt files, a JSON summary,
precision-recall plots, and the per-class diagnosis (its printed table, confusion_matrix.csv and .png)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vision.evaluation.confusion import ConfusionMatrix
from vision.evaluation.records import EvalRecords
from vision.utils.atomic import atomic_write, staged_path, write_text

SUMMARY_FILE = "summary.json"
CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"


def format_ap_table(class_names: Sequence[str], aps: Sequence[float], mean_ap: float) -> str:
    """The original eval's printout: a blank line before each heading, one ``name: ap`` line per class.

    class_names, aps: classes 1.. (no background). A nan AP prints as ``name: nan (no ground truth)``.
    """
    lines = ["", "Average Precision Per-class:"]
    for name, ap in zip(class_names, aps):
        lines.append(f"{name}: nan (no ground truth)" if math.isnan(ap) else f"{name}: {ap}")
    lines += ["", f"Average Precision Across All Classes:{mean_ap}"]
    return "\n".join(lines)


def _file_safe(class_name: str) -> str:
    return class_name.replace(os.sep, "_").replace("/", "_")


def detection_file_path(eval_dir: str | Path, class_name: str) -> Path:
    """``<eval_dir>/det_test_<class>.txt``."""
    return Path(eval_dir) / f"det_test_{_file_safe(class_name)}.txt"


def write_detection_files(eval_dir: str | Path, records: EvalRecords, class_names: Sequence[str]) -> list[Path]:
    """One ``det_test_<class>.txt`` per class 1.. in the original's format.

    Each line: ``<image id> <score> <x1> <y1> <x2> <y2>``, the box in 1-based pixels (0-based box + 1),
    numbers printed as float32 values (as the original). Detections in image order, then as predicted.
    Returns the paths written.
    """
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    order = np.argsort(records.det_image, kind="stable")
    labels = records.det_labels[order]
    for label in range(1, len(class_names)):
        selected = order[labels == label]
        values = np.concatenate(
            [records.det_scores[selected, None], records.det_boxes[selected] + np.float32(1.0)], axis=1
        ).astype(np.float32)
        image_ids = records.det_image[selected].tolist()
        path = detection_file_path(eval_dir, class_names[label])
        with atomic_write(path) as file:
            file.writelines(
                f"{records.image_ids[image]} {' '.join([str(value) for value in row])}\n"
                for image, row in zip(image_ids, values)
            )
        paths.append(path)
    return paths


def _json_number(value: float):
    return None if value is None or math.isnan(value) else float(value)


def write_summary(eval_dir: str | Path, summary: dict) -> Path:
    """Write ``<eval_dir>/summary.json`` (nan written as null)."""
    path = Path(eval_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(value):
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        if isinstance(value, (float, np.floating)):
            return _json_number(float(value))
        if isinstance(value, np.integer):
            return int(value)
        return value

    write_text(path, json.dumps(clean(summary), indent=2) + "\n")
    return path


def _interpolated(precision: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision


def plot_pr_curves(eval_dir: str | Path, curves: Sequence[tuple]) -> list[Path]:
    """One ``pr_<class>.png`` per ``(class_name, precision, recall, ap, label)`` entry.

    precision, recall: (K,) arrays; both the raw curve and its interpolated envelope are drawn.
    Classes without ground truth (nan AP) get no plot. Returns the paths written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for class_name, precision, recall, ap, ap_label in curves:
        if math.isnan(ap):
            continue
        figure = Figure(figsize=(4.5, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        precision, recall = np.asarray(precision), np.asarray(recall)
        if precision.size:
            axes.plot(recall, precision, color="0.6", linewidth=1, label="precision")
            axes.step(recall, _interpolated(precision), where="post", color="C0", linewidth=1.5,
                      label="interpolated")
            axes.legend(loc="lower left")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_title(f"{class_name}: {ap_label} {ap:.4f}")
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        path = eval_dir / f"pr_{_file_safe(class_name)}.png"
        with staged_path(path, fsync=False) as temporary:
            figure.savefig(temporary, format="png")
        paths.append(path)
    return paths


def format_class_diagnosis(confusion: ConfusionMatrix) -> str:
    """The per-class table printed after the AP table: a blank line, a heading naming the thresholds,
    then one row per class: recall and precision at the threshold (``-`` where undefined: no ground
    truth, or no detection), boxes missed, detections that took no box (``background``), and the classes
    its boxes were taken for."""
    names = confusion.class_names
    width = max([len("class"), *(len(name) for name in names)])
    lines = ["", f"Per-class diagnosis at score > {confusion.score_threshold:g}, IoU > "
                 f"{confusion.iou_threshold:g} ({CONFUSION_CSV}):",
             f"{'class':<{width}}  {'recall':>6}  {'precision':>9}  {'missed':>6}  {'background':>10}  "
             "confused with"]
    recall, precision, missed = confusion.recall, confusion.precision, confusion.missed
    background = confusion.background_detections
    for k, name in enumerate(names):
        confused = ", ".join(f"{other} {count}" for other, count in confusion.confused_with(k).items())
        lines.append(f"{name:<{width}}  {_fraction(recall[k]):>6}  {_fraction(precision[k]):>9}  "
                     f"{int(missed[k]):>6}  {int(background[k]):>10}  {confused}".rstrip())
    return "\n".join(lines)


def _fraction(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def write_confusion_csv(eval_dir: str | Path, confusion: ConfusionMatrix) -> Path:
    """``<eval_dir>/confusion_matrix.csv``: a header ``ground truth,<class>..,missed``, then
    one row per ground-truth class and a last ``background`` row, each its name and its integer counts."""
    path = Path(eval_dir) / CONFUSION_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["ground truth", *confusion.column_names])
    for name, row in zip(confusion.row_names, confusion.counts.tolist()):
        writer.writerow([name, *row])
    write_text(path, text.getvalue())
    return path


def plot_confusion_matrix(eval_dir: str | Path, confusion: ConfusionMatrix) -> Path:
    """``<eval_dir>/confusion_matrix.png``: each cell shaded by its share of its row (so that a rare
    class reads as clearly as a common one) and, up to 30 classes, labelled with its count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = confusion.counts
    size = len(confusion.row_names)
    row_sums = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(row_sums, 1)
    side = min(max(4.0, 1.5 + 0.45 * size), 30.0)
    figure = Figure(figsize=(side + 1.0, side), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row")
    if size <= 31:
        rows, columns = np.indices(counts.shape)
        for row, column, count, share in zip(rows.ravel(), columns.ravel(), counts.ravel(), shares.ravel()):
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=7,
                          color="white" if share > 0.5 else "black")
    axes.set_xticks(range(size), confusion.column_names, rotation=90, fontsize=7)
    axes.set_yticks(range(size), confusion.row_names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    axes.set_title(f"score > {confusion.score_threshold:g}, IoU > {confusion.iou_threshold:g}", fontsize=9)
    figure.tight_layout()
    path = Path(eval_dir) / CONFUSION_PNG
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(path, fsync=False) as temporary:
        figure.savefig(temporary, format="png")
    return path

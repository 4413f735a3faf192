"""What an evaluation leaves behind: the printed AP table, det_test_<class>.txt files, a JSON summary
and precision-recall plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vision.evaluation.records import EvalRecords
from vision.utils.atomic import atomic_write, staged_path, write_text

SUMMARY_FILE = "summary.json"


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

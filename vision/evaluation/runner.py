"""Evaluation end to end: load (data.py), predict (inference.py), score (voc.py / coco.py; the per-class
diagnosis, confusion.py), report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vision.evaluation.coco import COCOResult, score_coco
from vision.evaluation.confusion import ConfusionMatrix, confusion_matrix
from vision.evaluation.data import make_loader
from vision.evaluation.inference import EVAL_PROB_THRESHOLD, InferenceTiming, run_inference
from vision.evaluation.records import EvalRecords, RecordCollector
from vision.evaluation.report import (
    format_ap_table,
    format_class_diagnosis,
    plot_confusion_matrix,
    plot_pr_curves,
    write_confusion_csv,
    write_detection_files,
    write_summary,
)
from vision.evaluation.voc import VOCResult, score_voc

METRICS = ("voc", "coco")


def default_batch_size(device) -> int:
    """Images per predict_batch call: 32 on a GPU; 4 on a CPU, where larger batches run slower per image
    (their activations no longer fit in cache, and every call maps fresh memory for them)."""
    return 32 if _is_cuda(device) else 4


def default_num_workers(device) -> int:
    """Loading workers: up to 4 when a GPU predicts; none on a CPU, where the forward pass already uses
    every core and decoding, a small share of the time, is cheapest in line (docs/benchmarks.md)."""
    return min(4, os.cpu_count() or 1) if _is_cuda(device) else 0


def _is_cuda(device) -> bool:
    return getattr(device, "type", str(device)).startswith("cuda")


@dataclass
class Evaluation:
    """What :func:`evaluate` found. voc is set for metric "voc", coco for metric "coco"; confusion when
    evaluate was given a confusion_threshold."""

    class_names: list[str]
    metric: str
    records: EvalRecords
    timing: InferenceTiming
    scoring_seconds: float
    voc: VOCResult | None = None
    coco: COCOResult | None = None
    confusion: ConfusionMatrix | None = None

    @property
    def per_class_ap(self) -> list[float]:
        """AP of classes 1.. by the chosen metric (COCO: AP@[.5:.95]); nan without ground truth."""
        if self.metric == "coco":
            return list(self.coco.per_class_ap)
        return [result.ap for result in self.voc.classes]

    @property
    def mean_ap(self) -> float:
        """Mean AP over classes with ground truth (COCO: mAP@[.5:.95])."""
        return self.coco.map_50_95 if self.metric == "coco" else self.voc.mean_ap

    def table(self) -> str:
        """The printout in the original eval's shape (plus COCO's three figures for metric "coco"), then
        the per-class diagnosis when there is one."""
        text = format_ap_table(self.class_names[1:], self.per_class_ap, self.mean_ap)
        if self.metric == "coco":
            text += (
                f"\n\nCOCO mAP@[.5:.95]: {self.coco.map_50_95}"
                f"\nCOCO mAP@.5: {self.coco.map_50}"
                f"\nCOCO mAP@.75: {self.coco.map_75}"
            )
        if self.confusion is not None:
            text += "\n" + format_class_diagnosis(self.confusion)
        return text


def score(
    records: EvalRecords,
    class_names: Sequence[str],
    metric: str = "voc",
    iou_threshold: float = 0.5,
    use_2007_metric: bool = True,
    coco_ground_truth=None,
) -> tuple[VOCResult | None, COCOResult | None]:
    """Score gathered records by the chosen metric ("voc": iou_threshold and use_2007_metric apply;
    "coco": against coco_ground_truth, the data set's original JSON, when given)."""
    if metric == "voc":
        return score_voc(records, class_names, iou_threshold, use_2007_metric), None
    if metric == "coco":
        return None, score_coco(records, class_names, coco_ground_truth)
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def evaluate(
    predictor,
    dataset,
    class_names: Sequence[str],
    metric: str = "voc",
    iou_threshold: float = 0.5,
    use_2007_metric: bool = True,
    batch_size: int | None = None,
    num_workers: int | None = None,
    prob_threshold: float = EVAL_PROB_THRESHOLD,
    progress: bool = True,
    confusion_threshold: float | None = None,
) -> Evaluation:
    """Run the predictor over every image of the data set and score its detections.

    predictor: ``predict_batch`` as :class:`vision.ssd.predictor.Predictor`; dataset: ``get_image``,
    ``get_annotation``, ``ids`` as VOCDataset; class_names: BACKGROUND first, indexed by the labels.
    batch_size, num_workers: None for :func:`default_batch_size` / :func:`default_num_workers` of the
    predictor's device. confusion_threshold: the score threshold of the per-class diagnosis
    (:mod:`vision.evaluation.confusion`, at iou_threshold), in [prob_threshold, 1); None: no diagnosis.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    # Checked before inference: detections at or below prob_threshold are never recorded, so a lower
    # operating threshold would silently act as prob_threshold.
    if confusion_threshold is not None and not prob_threshold <= confusion_threshold < 1.0:
        raise ValueError(f"confusion_threshold {confusion_threshold}: must be at least the evaluation's "
                         f"score threshold {prob_threshold} and below 1")
    device = getattr(predictor, "device", "cpu")
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    num_workers = default_num_workers(device) if num_workers is None else num_workers
    collector = RecordCollector()
    loader = make_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    timing = run_inference(predictor, loader, collector, prob_threshold=prob_threshold, progress=progress,
                           total=len(dataset))
    records = collector.records()
    start = time.perf_counter()
    # A COCO data set is scored against its original JSON, so the figures equal the official tools'.
    coco_ground_truth = getattr(dataset, "coco_ground_truth", None) if metric == "coco" else None
    voc, coco = score(records, class_names, metric, iou_threshold, use_2007_metric, coco_ground_truth)
    confusion = None
    if confusion_threshold is not None:
        confusion = confusion_matrix(records, class_names, confusion_threshold, iou_threshold)
    scoring_seconds = time.perf_counter() - start
    return Evaluation(list(class_names), metric, records, timing, scoring_seconds, voc, coco, confusion)


def write_outputs(eval_dir: str | Path, evaluation: Evaluation, settings: dict | None = None) -> dict:
    """det_test_<class>.txt files, summary.json and pr_<class>.png plots in eval_dir; with a diagnosis,
    also confusion_matrix.csv and .png, and ``confusion_threshold`` and ``per_class`` in the summary.

    settings: extra entries for the summary (the command's flags). Returns the summary written.
    """
    eval_dir = Path(eval_dir)
    write_detection_files(eval_dir, evaluation.records, evaluation.class_names)
    names = evaluation.class_names[1:]
    summary = {
        "metric": evaluation.metric,
        **(settings or {}),
        "num_images": evaluation.records.num_images,
        "skipped_images": list(evaluation.timing.skipped_ids),
        "num_detections": int(evaluation.records.det_labels.size),
        "images_per_second": evaluation.timing.images_per_second,
        "inference_seconds": evaluation.timing.seconds,
        "scoring_seconds": evaluation.scoring_seconds,
        "mean_ap": evaluation.mean_ap,
        "per_class_ap": dict(zip(names, evaluation.per_class_ap)),
    }
    if evaluation.voc is not None:
        summary["num_ground_truth"] = {result.name: result.num_positives for result in evaluation.voc.classes}
        summary["num_class_detections"] = {result.name: result.num_detections for result in evaluation.voc.classes}
        ap_label = "AP (11-point)" if evaluation.voc.use_2007_metric else "AP (area)"
        curves = [(r.name, r.precision, r.recall, r.ap, ap_label) for r in evaluation.voc.classes]
    else:
        coco = evaluation.coco
        summary["coco"] = {"mAP@[.5:.95]": coco.map_50_95, "mAP@.5": coco.map_50, "mAP@.75": coco.map_75}
        iou_50 = int(abs(coco.iou_thresholds - 0.5).argmin())
        curves = []
        for k, (name, ap) in enumerate(zip(names, coco.per_class_ap)):
            precision = coco.precision[iou_50, :, k]
            defined = precision > -1
            curves.append((name, precision[defined], coco.recall_thresholds[defined], ap, "AP@[.5:.95]"))
    if evaluation.confusion is not None:
        summary["confusion_threshold"] = evaluation.confusion.score_threshold
        summary["per_class"] = evaluation.confusion.per_class()
        write_confusion_csv(eval_dir, evaluation.confusion)
        plot_confusion_matrix(eval_dir, evaluation.confusion)
    write_summary(eval_dir, summary)
    plot_pr_curves(eval_dir, curves)
    return summary

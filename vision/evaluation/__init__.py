"""Evaluation of detectors: data loading (data), the inference loop (inference), gathered records
(records), scoring by the VOC protocol (voc) or COCO's (coco), and the written report (report);
runner ties them together."""

from vision.evaluation.runner import (
    METRICS,
    Evaluation,
    default_batch_size,
    default_num_workers,
    evaluate,
    score,
    write_outputs,
)

__all__ = ["METRICS", "Evaluation", "default_batch_size", "default_num_workers", "evaluate", "score", "write_outputs"]

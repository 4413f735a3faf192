"""Ground truth and detections gathered over a data set, as flat arrays (the input of every scorer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


@dataclass
class EvalRecords:
    """Everything the scorers need, for N images.

    image_ids: the data set's ids, by image index 0..N-1; image_sizes: (N, 2) int64 (height, width).
    gt_*: one row per ground truth box: image index (int64), label (int64), box (float32 corner
    pixels, 0-based), difficult (bool). det_*: one row per detection: image index, label, score
    (float32), box (float32 corner pixels, 0-based).
    """

    image_ids: list = field(default_factory=list)
    image_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    gt_image: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gt_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gt_boxes: np.ndarray = field(default_factory=_empty_boxes)
    gt_difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    det_image: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    det_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    det_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    det_boxes: np.ndarray = field(default_factory=_empty_boxes)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)


class RecordCollector:
    """Accumulates samples and predictor outputs batch by batch (reset / process / records).

    Images are numbered in the order they are processed; feed them in data set order so that image
    index i is data set item i.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._image_ids: list = []
        self._sizes: list = []
        self._gt: list = []
        self._det: list = []

    def process(self, samples: Sequence, outputs: Sequence[tuple]) -> None:
        """samples: EvalSamples (image, boxes, labels, difficult, image_id); outputs: one
        ``(boxes (K, 4), labels (K,), probs (K,))`` per sample, tensors or arrays, corner pixels 0-based."""
        if len(samples) != len(outputs):
            raise ValueError(f"{len(samples)} samples but {len(outputs)} predictions")
        for sample, (boxes, labels, probs) in zip(samples, outputs):
            image_index = len(self._image_ids)
            self._image_ids.append(sample.image_id)
            self._sizes.append(sample.image.shape[:2])
            self._gt.append((image_index, sample.labels, sample.boxes, sample.difficult))
            self._det.append((image_index, _numpy(labels, np.int64), _numpy(probs, np.float32),
                              _numpy(boxes, np.float32)))

    def records(self) -> EvalRecords:
        """The gathered records as flat arrays."""
        return EvalRecords(
            image_ids=list(self._image_ids),
            image_sizes=np.asarray(self._sizes, dtype=np.int64).reshape(-1, 2),
            gt_image=_repeat_index(self._gt, lambda g: len(g[1])),
            gt_labels=_concat([g[1] for g in self._gt], np.int64, (0,)),
            gt_boxes=_concat([g[2] for g in self._gt], np.float32, (0, 4)),
            gt_difficult=_concat([g[3] for g in self._gt], bool, (0,)),
            det_image=_repeat_index(self._det, lambda d: len(d[1])),
            det_labels=_concat([d[1] for d in self._det], np.int64, (0,)),
            det_scores=_concat([d[2] for d in self._det], np.float32, (0,)),
            det_boxes=_concat([d[3] for d in self._det], np.float32, (0, 4)),
        )


def _numpy(values, dtype) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _concat(parts: list, dtype, empty_shape: tuple) -> np.ndarray:
    parts = [np.asarray(part, dtype=dtype).reshape((-1,) + empty_shape[1:]) for part in parts]
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=dtype)


def _repeat_index(entries: list, count) -> np.ndarray:
    return np.repeat(
        np.asarray([entry[0] for entry in entries], dtype=np.int64),
        np.asarray([count(entry) for entry in entries], dtype=np.int64),
    )

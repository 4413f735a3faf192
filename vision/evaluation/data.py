"""Data loading for evaluation: test images at their original resolution plus their annotations.

Images are decoded in DataLoader workers (the data sets read them with cv2.imread and convert BGR to
RGB); batches are plain lists, since images differ in size and the predictor resizes them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

DATASET_TYPES = ("voc", "open_images", "coco", "yolo", "csv", "auto")  # vision.datasets.factory's


@dataclass
class EvalSample:
    """One test image and its ground truth.

    index: position in the data set; image_id: the data set's id (VOC: the file stem);
    image: (H, W, 3) uint8 RGB at original resolution, or None for an unreadable sample; boxes: (n, 4) float32 corner
    pixels, 0-based; labels: (n,) int64 class indices (0 is background); difficult: (n,) bool.
    """

    index: int
    image_id: Hashable
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


def open_dataset(dataset_type: str, root: str | Path, label_file: str | Path | None = None):
    """The evaluation split of a data set, without transforms (as the original), difficult / crowd
    boxes kept in the annotations.

    dataset_type: voc (ImageSets/Main/test.txt), open_images (the "test" split), coco, yolo, csv (their
    *test* split, else *val*), or auto (detected from the root). label_file: the model's class names, so
    that the data set's label indices are the model's (default: the data set's own).
    """
    from vision.datasets.factory import open_one

    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got {dataset_type!r}")
    return open_one(dataset_type, str(root), is_test=True, label_file=label_file)


class EvalSamples(Dataset):
    """Wraps a detection data set (``get_image(i)``, ``get_annotation(i)``, ``ids``) as EvalSamples."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> EvalSample:
        image = self.dataset.get_image(index)
        image_id, (boxes, labels, difficult) = self.dataset.get_annotation(index)
        return EvalSample(
            index=index,
            image_id=image_id,
            image=image,
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(labels, dtype=np.int64).reshape(-1),
            difficult=np.asarray(difficult).astype(bool).reshape(-1),
        )


def _keep_as_list(samples: Sequence[EvalSample]) -> list[EvalSample]:
    return list(samples)


def _single_threaded_worker(_worker_id: int) -> None:
    # Workers only decode images; one torch thread each leaves the cores to the main process's forward
    # pass. cv2.setNumThreads is not called here: in a forked worker it deadlocks once the parent has
    # used OpenCV's thread pool (image decoding does not use that pool anyway).
    torch.set_num_threads(1)


def make_loader(dataset, batch_size: int = 32, num_workers: int = 2) -> DataLoader:
    """Batches of EvalSamples (lists, in data set order) read by ``num_workers`` processes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return DataLoader(
        EvalSamples(dataset),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep_as_list,
        worker_init_fn=_single_threaded_worker if num_workers > 0 else None,
        persistent_workers=False,
    )

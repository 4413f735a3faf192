"""Every box a data set trains on, relative to its image, read from the annotations alone (no image is
decoded): what the prior coverage and the prior fit (``--priors auto``) are measured on."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from vision.datasets.annotated import AnnotatedImageDataset
from vision.datasets.errors import BadImageError, warn_bad_data
from vision.datasets.images import read_image_size
from vision.datasets.open_images import OpenImagesDataset
from vision.transforms.box_ops import clip_boxes, valid_box_mask


def relative_boxes(dataset) -> Tuple[np.ndarray, np.ndarray]:
    """``(boxes, labels)`` of every object ``dataset`` (any format, or several concatenated) trains on:
    boxes float64 ``(n, 4)`` corner form relative to their image (0..1), clipped; labels int64 ``(n,)``.
    Difficult (VOC) and crowd (COCO) objects are left out unless the data set keeps them, as training
    does. Image sizes come from the annotations or the image headers; an image whose size cannot be read
    is left out with a warning (training skips it too)."""
    parts = getattr(dataset, "datasets", None) or [dataset]
    boxes: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    for part in parts:
        part_boxes, part_labels = _relative_boxes_of(part)
        boxes.append(part_boxes)
        labels.append(part_labels)
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    return np.concatenate(boxes), np.concatenate(labels)


def _relative_boxes_of(dataset) -> Tuple[np.ndarray, np.ndarray]:
    if isinstance(dataset, OpenImagesDataset):  # its CSV holds relative boxes already
        pairs = [dataset.relative_annotation(index) for index in range(len(dataset))]
        return _stack(pairs)
    if not isinstance(dataset, AnnotatedImageDataset):
        raise TypeError(f"{type(dataset).__name__}: not a data set of this toolkit")
    pairs = []
    for index, image_id in enumerate(dataset.ids):
        if dataset.is_bad_annotation(index):
            continue
        _, (boxes, labels, difficult) = dataset.get_annotation(index)
        if not dataset.keep_difficult:
            boxes, labels = boxes[difficult == 0], labels[difficult == 0]
        size = dataset.annotated_size(index)
        if size is None:
            try:
                size = read_image_size(dataset.image_path(image_id))
            except BadImageError as error:
                warn_bad_data(f"skipping image {image_id}: {error}")
                continue
        width, height = size
        boxes = boxes.astype(np.float32).copy()
        clip_boxes(boxes, width, height)
        keep = valid_box_mask(boxes)
        pairs.append((boxes[keep] / np.array([width, height, width, height], np.float32), labels[keep]))
    return _stack(pairs)


def _stack(pairs) -> Tuple[np.ndarray, np.ndarray]:
    if not pairs:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b, _ in pairs])
    labels = np.concatenate([np.asarray(values, np.int64).reshape(-1) for _, values in pairs])
    return np.clip(boxes, 0.0, 1.0), labels

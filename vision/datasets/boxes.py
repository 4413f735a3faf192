"""Every box a data set trains on, relative to its image, read from the annotations alone (no image is
decoded): what the prior coverage and the prior fit (``--priors auto``) are measured on."""
from __future__ import annotations

from typing import List, Optional, Tuple

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
        try:
            size = training_image_size(dataset.annotated_size(index), dataset.image_path(image_id))
        except BadImageError as error:
            warn_bad_data(f"skipping image {image_id}: {error}")
            continue
        pairs.append(image_relative_boxes(boxes, labels, difficult, size, dataset.keep_difficult))
    return _stack(pairs)


def training_image_size(annotated_size: Optional[Tuple[int, int]], image_path) -> Tuple[int, int]:
    """``(width, height)`` an image's boxes are made relative to: the annotation's size, else the image
    header's (no image is decoded); raises BadImageError when neither can be read."""
    return tuple(annotated_size) if annotated_size is not None else read_image_size(image_path)


def image_relative_boxes(boxes: np.ndarray, labels: np.ndarray, is_difficult: np.ndarray, size: Tuple[int, int],
                         keep_difficult: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """One image's boxes as training measures them (the rule of :func:`relative_boxes`, which the data set
    checker's coverage uses too): difficult (VOC) and crowd (COCO) objects left out unless
    ``keep_difficult``, the rest clipped to the image ``size`` (width, height), those left without area
    dropped, and made relative to it. boxes: ``(n, 4)`` 0-based pixel corners as a data set loads them;
    returns float32 ``(m, 4)`` and int64 ``(m,)``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if not keep_difficult:
        kept = np.asarray(is_difficult).reshape(-1) == 0
        boxes, labels = boxes[kept], labels[kept]
    width, height = size
    boxes = boxes.copy()
    clip_boxes(boxes, width, height)
    keep = valid_box_mask(boxes)
    return boxes[keep] / np.array([width, height, width, height], np.float32), labels[keep]


def _stack(pairs) -> Tuple[np.ndarray, np.ndarray]:
    if not pairs:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b, _ in pairs])
    labels = np.concatenate([np.asarray(values, np.int64).reshape(-1) for _, values in pairs])
    return np.clip(boxes, 0.0, 1.0), labels

"""Numpy box helpers for the data pipeline (the model side has its own torch versions in vision.utils).

All boxes here are corner form [x1, y1, x2, y2], float, shape (n, 4); the unit (pixels or 0..1) is
whatever the caller uses, as long as it is the same for every argument.
"""
import numpy as np

EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)
EMPTY_LABELS = np.zeros((0,), dtype=np.int64)


def as_boxes(boxes) -> np.ndarray:
    """Any (n, 4) array-like (or None) as a new float32 array of shape (n, 4); the input is never changed."""
    if boxes is None:
        return EMPTY_BOXES.copy()
    array = np.array(boxes, dtype=np.float32, copy=True)
    if array.size == 0:
        return EMPTY_BOXES.copy()
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4), got {array.shape}")
    return array


def as_labels(labels, num_boxes: int) -> np.ndarray:
    """Labels as a new int64 array of shape (num_boxes,); None is allowed only with zero boxes."""
    if labels is None:
        if num_boxes:
            raise ValueError(f"{num_boxes} boxes were given without labels")
        return EMPTY_LABELS.copy()
    array = np.array(labels, dtype=np.int64, copy=True).reshape(-1)
    if array.shape[0] != num_boxes:
        raise ValueError(f"{num_boxes} boxes but {array.shape[0]} labels")
    return array


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip corner-form boxes in place to [0, width] x [0, height]; returns the same array."""
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    return boxes


def valid_box_mask(boxes: np.ndarray) -> np.ndarray:
    """(n,) bool: True where x2 > x1 and y2 > y1 and every coordinate is finite."""
    finite = np.isfinite(boxes).all(axis=1)
    return finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(n,) areas of corner-form boxes; inverted boxes count as zero."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union between (n, 4) and (m, 4) corner-form boxes; 0 where a union is 0."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0, None)
    intersection = overlap[..., 0] * overlap[..., 1]
    union = box_areas(boxes_a)[:, None] + box_areas(boxes_b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)

"""The training, test and prediction transforms, with the original toolkit's names and call shapes.

    TrainAugmentation(size, mean=0, std=1.0)(image, boxes, labels) -> (tensor, boxes, labels)
    TestTransform(size, mean=0.0, std=1.0)(image, boxes, labels)    -> (tensor, boxes, labels)
    PredictionTransform(size, mean=0.0, std=1.0)(image)             -> tensor

In: image RGB uint8 numpy (H, W, 3); boxes float (n, 4) corner form [x1, y1, x2, y2] in pixels (n may be
0; None means none); labels int (n,).
size: an int (a square) or (width, height) in pixels, e.g. (640, 360).
Out: image float32 torch tensor (3, height, width) = (cv2.resize(image, INTER_LINEAR) - mean) / std;
boxes float32 numpy (m, 4) corner form in 0..1 relative to the image, every one with x2 > x1 and y2 > y1;
labels int64 numpy (m,), in step with the boxes. mean and std are a scalar or an RGB triple
(MobileNets: mean 127, std 128; VGG: mean [123, 117, 104], std 1).
"""
import cv2
import numpy as np
import torch

from vision.utils.image_size import as_width_height

from .augmentation import Expand, PhotometricDistort, RandomHorizontalFlip, RandomIoUCrop, SanitizeBoxes
from .box_ops import as_boxes, as_labels, valid_box_mask


def _rgb_triple(value, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32).reshape(-1)
    if array.size not in (1, 3):
        raise ValueError(f"{name} must be a number or an RGB triple, got {value!r}")
    return np.broadcast_to(array, (3,)).copy()


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an RGB numpy image of shape (H, W, 3), got {type(image).__name__} {shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


class ResizeNormalize:
    """Image -> float32 tensor (3, height, width) = (cv2.resize(image, INTER_LINEAR) - mean) / std;
    ``size`` an int (a square) or ``(width, height)``."""

    def __init__(self, size, mean=0.0, std=1.0):
        self.size = as_width_height(size)
        self.mean = _rgb_triple(mean, "mean")
        self.inverse_std = 1.0 / _rgb_triple(std, "std")

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        resized = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        # Transposing the uint8 image first and normalising in place is far cheaper than normalising
        # (H, W, 3) with mixed dtypes and transposing the floats.
        planes = np.ascontiguousarray(resized.transpose(2, 0, 1)).astype(np.float32)
        planes -= self.mean[:, None, None]
        planes *= self.inverse_std[:, None, None]
        return torch.from_numpy(planes)


def to_relative_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int):
    """Pixel boxes -> boxes in 0..1 of the image (clipped), dropping any that have no area left."""
    relative = boxes / np.array([width, height, width, height], dtype=np.float32)
    np.clip(relative, 0.0, 1.0, out=relative)
    keep = valid_box_mask(relative)
    return relative[keep].astype(np.float32, copy=False), labels[keep]


class TrainAugmentation:
    """The SSD training recipe: photometric distortion, zoom out (up to 4x, filled with the mean), a random
    crop meeting a sampled IoU bound, horizontal flip, resize to ``size`` (int or (width, height)), (x - mean) / std.

    Call with (image, boxes, labels) as in the module docstring. Boxes are clipped to the image first and
    boxes without area dropped; objects whose centre leaves the crop are dropped with their labels. An
    image without boxes goes through every step and comes out with (0, 4) boxes.
    """

    def __init__(self, size, mean=0, std=1.0):
        self.size = size
        self.mean = mean
        self.std = std
        self.steps = [
            SanitizeBoxes(),
            PhotometricDistort(),
            Expand(_rgb_triple(mean, "mean")),
            RandomIoUCrop(),
            RandomHorizontalFlip(),
        ]
        self.to_tensor = ResizeNormalize(size, mean, std)

    def __call__(self, image, boxes=None, labels=None):
        image = _check_image(image)
        boxes = as_boxes(boxes)
        labels = as_labels(labels, len(boxes))
        for step in self.steps:
            image, boxes, labels = step(image, boxes, labels)
        height, width = image.shape[:2]
        boxes, labels = to_relative_boxes(boxes, labels, width, height)
        return self.to_tensor(image), boxes, labels


class TestTransform:
    """Evaluation: boxes to 0..1 of the image, resize to ``size`` (int or (width, height)), (x - mean) / std.
    No randomness."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, size, mean=0.0, std=1.0):
        self.size = size
        self.mean = mean
        self.std = std
        self.to_tensor = ResizeNormalize(size, mean, std)

    def __call__(self, image, boxes=None, labels=None):
        image = _check_image(image)
        boxes = as_boxes(boxes)
        labels = as_labels(labels, len(boxes))
        height, width = image.shape[:2]
        boxes, labels = to_relative_boxes(boxes, labels, width, height)
        return self.to_tensor(image), boxes, labels


class PredictionTransform:
    """Inference: image RGB uint8 (H, W, 3) -> float32 tensor (3, height, width) = (resized - mean) / std."""

    def __init__(self, size, mean=0.0, std=1.0):
        self.size = size
        self.mean = mean
        self.std = std
        self.to_tensor = ResizeNormalize(size, mean, std)

    def __call__(self, image) -> torch.Tensor:
        return self.to_tensor(_check_image(image))

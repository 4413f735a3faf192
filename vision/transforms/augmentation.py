"""The SSD augmentation steps, in numpy + OpenCV.

Every step is a callable ``(image, boxes, labels) -> (image, boxes, labels)``:
image RGB uint8 (H, W, 3) numpy; boxes float32 (n, 4) corner form [x1, y1, x2, y2] in pixels of that
image; labels int64 (n,). n may be 0: every step passes an image without boxes through. Each random step
has a ``sample`` method that draws its parameters (the one-pass and batched recipes in
vision.transforms.one_pass and vision.training.gpu_augmentation draw through it, so all draw alike). Steps never
change their inputs in place; they return new arrays (or views of the image).

Randomness comes from numpy's global generator (``np.random``), as in the original toolkit, so that
``vision.datasets.collation.worker_init_fn`` can seed each data-loading worker differently.

Why numpy + OpenCV rather than torchvision.transforms.v2 (benchmarks/bench_data.py times both; the
figures are in docs/datasets.md): v2's RandomPhotometricDistort converts to HSV for its hue step in float
torch code, where uint8 lookup tables and cv2.cvtColor do the same far faster; v2's zoom-out/crop/flip/
resize are not faster than the numpy views and cv2.resize used here; and v2.RandomIoUCrop needs at least
one box (with none it never finds a crop), while images without objects are valid training samples here.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .box_ops import clip_boxes, iou_matrix, valid_box_mask

Sample = Tuple[np.ndarray, np.ndarray, np.ndarray]

# The six orders of the RGB channels; the original's "lighting noise" picks one at random.
_CHANNEL_ORDERS = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
_IDENTITY_LUT = np.arange(256, dtype=np.float32)


def _lookup(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a float lookup table (256,) or (256, 1, 3), clipped to 0..255, to a uint8 image."""
    return cv2.LUT(image, np.clip(np.rint(table), 0, 255).astype(np.uint8))


class SanitizeBoxes:
    """Clip boxes to the image and drop those with no area left (labels kept in step)."""

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Sample:
        height, width = image.shape[:2]
        boxes = clip_boxes(boxes.copy(), width, height)
        keep = valid_box_mask(boxes)
        return image, boxes[keep], labels[keep]


class PhotometricDistort:
    """The SSD photometric distortion on uint8 RGB.

    Each with probability 0.5: brightness (add a value in +-brightness_delta), contrast (multiply by a
    factor in contrast_range, before or after the colour steps), saturation (scale S in HSV), hue (shift H by
    up to hue_delta_degrees), and a random order of the three channels. Unlike the original (float, never
    clipped) the result is clipped to 0..255 after each step, as a real image would be.
    """

    def __init__(self, brightness_delta: float = 32.0, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta_degrees: float = 18.0, p: float = 0.5):
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta_degrees = hue_delta_degrees
        self.p = p

    def sample(self) -> "PhotometricParameters":
        """Draw one distortion's parameters from ``np.random`` (always the same number of draws)."""
        draws = np.random.random(6)  # one draw per decision, so the number of draws is fixed
        brightness = np.random.uniform(-self.brightness_delta, self.brightness_delta)
        contrast = np.random.uniform(*self.contrast_range)
        saturation = np.random.uniform(*self.saturation_range)
        # OpenCV's 8-bit HSV stores hue in 0..179 (2 degrees a unit).
        hue_shift = int(np.rint(np.random.uniform(-self.hue_delta_degrees, self.hue_delta_degrees) / 2))
        order = _CHANNEL_ORDERS[np.random.randint(len(_CHANNEL_ORDERS))]
        use_brightness, use_contrast, contrast_first, use_saturation, use_hue, use_swap = (
            bool(d) for d in draws < self.p)
        return PhotometricParameters(brightness if use_brightness else 0.0, contrast if use_contrast else 1.0,
                                     contrast_first, saturation if use_saturation else 1.0,
                                     hue_shift if use_hue else 0,
                                     tuple(int(c) for c in order) if use_swap else (0, 1, 2))

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Sample:
        return apply_photometric(image, self.sample()), boxes, labels


@dataclass(frozen=True)
class PhotometricParameters:
    """One photometric distortion, neutral values meaning "step not taken": brightness added (0), contrast
    factor (1) applied before the colour steps when contrast_first else after them, saturation factor (1),
    hue_shift in OpenCV hue units of 2 degrees (0), channel order (0, 1, 2)."""

    brightness: float = 0.0
    contrast: float = 1.0
    contrast_first: bool = True
    saturation: float = 1.0
    hue_shift: int = 0
    order: Tuple[int, int, int] = (0, 1, 2)


def apply_photometric(image: np.ndarray, parameters: PhotometricParameters) -> np.ndarray:
    """The distortion ``parameters`` on a uint8 RGB image (H, W, 3), clipped to 0..255 after each step."""
    table = _IDENTITY_LUT
    if parameters.brightness != 0.0:
        table = table + parameters.brightness
    if parameters.contrast != 1.0 and parameters.contrast_first:
        table = table * parameters.contrast
    if table is not _IDENTITY_LUT:
        image = _lookup(image, table)
    if parameters.saturation != 1.0 or parameters.hue_shift != 0:
        hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
        hue_table = (_IDENTITY_LUT + parameters.hue_shift) % 180
        saturation_table = _IDENTITY_LUT * parameters.saturation
        hsv = _lookup(hsv, np.stack([hue_table, saturation_table, _IDENTITY_LUT], axis=1)[:, None, :])
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if parameters.contrast != 1.0 and not parameters.contrast_first:
        image = _lookup(image, _IDENTITY_LUT * parameters.contrast)
    if parameters.order != (0, 1, 2):
        image = np.ascontiguousarray(image[..., list(parameters.order)])
    return image


class Expand:
    """Zoom out: with probability p, place the image at a random spot of a canvas up to max_ratio times
    its size, filled with fill_rgb (the net's mean, so that it becomes 0 after normalisation)."""

    def __init__(self, fill_rgb, max_ratio: float = 4.0, p: float = 0.5):
        self.fill = np.clip(np.rint(np.broadcast_to(np.asarray(fill_rgb, dtype=np.float64), (3,))), 0, 255)
        self.fill = self.fill.astype(np.uint8)
        self.fill_value = tuple(int(v) for v in self.fill)
        self.max_ratio = max_ratio
        self.p = p

    def sample(self, width: int, height: int) -> Optional[Tuple[int, int, int, int]]:
        """Draw from ``np.random``: None (no zoom out), or ``(canvas_width, canvas_height, left, top)`` in
        pixels, the image's place on the canvas."""
        if np.random.random() >= self.p:
            return None
        ratio = np.random.uniform(1.0, self.max_ratio)
        canvas_width, canvas_height = int(width * ratio), int(height * ratio)
        left = int(np.random.uniform(0, canvas_width - width))
        top = int(np.random.uniform(0, canvas_height - height))
        return canvas_width, canvas_height, left, top

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Sample:
        height, width = image.shape[:2]
        placement = self.sample(width, height)
        if placement is None:
            return image, boxes, labels
        canvas_width, canvas_height, left, top = placement
        # One OpenCV call pads and fills; numpy's broadcast fill of a 3-vector is several times slower.
        canvas = cv2.copyMakeBorder(np.ascontiguousarray(image), top, canvas_height - height - top, left,
                                    canvas_width - width - left, cv2.BORDER_CONSTANT, value=self.fill_value)
        return canvas, expand_boxes(boxes, left, top), labels


def expand_boxes(boxes: np.ndarray, left: int, top: int) -> np.ndarray:
    """Boxes of an image placed at (left, top) of a canvas, in canvas pixels."""
    return boxes + np.array([left, top, left, top], dtype=np.float32)


class RandomIoUCrop:
    """The SSD random crop, with its IoU bound enforced.

    A mode is drawn from sample_options: None keeps the whole image; a number m asks for a crop (each side
    min_scale..1 of the image's, aspect ratio h/w in [0.5, 2]) that keeps at least one object (its centre
    strictly inside the crop) with IoU(object, crop) >= m. The original tested
    `overlap.min() < min_iou and max_iou < overlap.max()`, which rejects almost nothing; here a crop is
    taken only when the bound holds, as in Caffe SSD and torchvision. `trials` crops are drawn at once and
    tested together (no per-box loop). Objects whose centre falls outside the crop are dropped; the rest
    are clipped to it. An image without boxes gets a crop of the same size law (no object to keep).
    After max_rounds modes without success the image is returned unchanged.
    """

    def __init__(self, sample_options: Sequence[Optional[float]] = (None, 0.1, 0.3, 0.7, 0.9, 0.0),
                 min_scale: float = 0.3, min_aspect: float = 0.5, max_aspect: float = 2.0,
                 trials: int = 50, max_rounds: int = 20):
        self.sample_options = list(sample_options)
        self.min_scale = min_scale
        self.min_aspect = min_aspect
        self.max_aspect = max_aspect
        self.trials = trials
        self.max_rounds = max_rounds

    def sample_crop(self, width: int, height: int, boxes: np.ndarray, min_iou: float):
        """One crop [left, top, right, bottom] (int pixels) meeting min_iou, and its (n,) kept-box mask;
        None if none of `trials` candidates qualifies."""
        sizes = np.random.uniform(self.min_scale, 1.0, size=(self.trials, 2)) * (width, height)
        offsets = np.random.uniform(0.0, 1.0, size=(self.trials, 2)) * ((width, height) - sizes)
        crops = np.floor(np.concatenate([offsets, offsets + sizes], axis=1))
        crop_w, crop_h = crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]
        ok = (crop_w > 0) & (crop_h > 0)
        aspect = np.divide(crop_h, crop_w, out=np.zeros_like(crop_h), where=ok)
        ok &= (aspect >= self.min_aspect) & (aspect <= self.max_aspect)
        if len(boxes):
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            inside = ((crops[:, None, 0] < centres[None, :, 0]) & (centres[None, :, 0] < crops[:, None, 2])
                      & (crops[:, None, 1] < centres[None, :, 1]) & (centres[None, :, 1] < crops[:, None, 3]))
            best_iou = np.where(inside, iou_matrix(crops, boxes.astype(np.float64)), -1.0).max(axis=1)
            ok &= best_iou >= min_iou
        else:
            inside = np.zeros((self.trials, 0), dtype=bool)
        found = np.flatnonzero(ok)
        if len(found) == 0:
            return None
        return crops[found[0]].astype(np.int64), inside[found[0]]

    def sample(self, width: int, height: int, boxes: np.ndarray):
        """Draw from ``np.random``: None (keep the whole image), or ``(crop [left, top, right, bottom] int64
        pixels, kept-box mask (n,))``."""
        for _ in range(self.max_rounds):
            min_iou = self.sample_options[np.random.randint(len(self.sample_options))]
            if min_iou is None:
                return None
            crop = self.sample_crop(width, height, boxes, min_iou)
            if crop is not None:
                return crop
        return None

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Sample:
        height, width = image.shape[:2]
        crop = self.sample(width, height, boxes)
        if crop is None:
            return image, boxes, labels
        (left, top, right, bottom), keep = crop
        kept_boxes, kept_labels = crop_boxes(boxes, labels, crop[0], keep)
        return image[top:bottom, left:right], kept_boxes, kept_labels


def crop_boxes(boxes: np.ndarray, labels: np.ndarray, crop: np.ndarray, keep: np.ndarray):
    """The kept boxes clipped to ``crop`` [left, top, right, bottom] and moved to its pixels, with their labels."""
    left, top, right, bottom = crop
    kept_boxes = boxes[keep]
    kept_boxes[:, :2] = np.maximum(kept_boxes[:, :2], (left, top))
    kept_boxes[:, 2:] = np.minimum(kept_boxes[:, 2:], (right, bottom))
    kept_boxes -= np.array([left, top, left, top], dtype=np.float32)
    return kept_boxes, labels[keep]


class RandomHorizontalFlip:
    """Mirror image and boxes left-right with probability p."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def sample(self) -> bool:
        """Draw from ``np.random`` whether to mirror."""
        return bool(np.random.random() < self.p)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Sample:
        if not self.sample():
            return image, boxes, labels
        return cv2.flip(np.ascontiguousarray(image), 1), flip_boxes(boxes, image.shape[1]), labels


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes of an image mirrored left-right (``width`` its width in the boxes' unit)."""
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped

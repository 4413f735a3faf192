"""The SSD training recipe as sampled parameters, and its geometry as one resampling pass.

``sample_parameters(recipe, width, height, boxes, labels)`` draws everything ``TrainAugmentation`` would
draw for an image of that size, through the same steps' ``sample`` methods and in the same order (so with
the same ``np.random`` state it draws the same values), and moves the boxes exactly as the recipe does. The
geometry (zoom out, crop, mirror, resize) is then one axis-aligned affine map from the output to the source
image: the output spans ``window`` (in source pixels, possibly reaching past the image, where the mean
fills), mirrored when ``flip``. Neither the zoomed-out canvas nor the full-size distorted photo is ever made.

``OnePassTrainAugmentation`` applies it on the CPU (one ``cv2.warpAffine`` to the net's size, then the
photometric steps at that size); the batched GPU version is ``vision.training.gpu_augmentation``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np
import torch

from vision.utils.image_size import as_width_height

from .augmentation import (
    Expand,
    PhotometricDistort,
    PhotometricParameters,
    RandomHorizontalFlip,
    RandomIoUCrop,
    apply_photometric,
    crop_boxes,
    expand_boxes,
    flip_boxes,
)
from .box_ops import as_boxes, as_labels, clip_boxes, valid_box_mask
from .pipelines import TrainAugmentation, _check_image, _rgb_triple, to_relative_boxes


@dataclass
class AugmentationParameters:
    """One image's draw of the training recipe.

    photometric: the colour steps; window: float64 (4,) [x0, y0, width, height] in source-image pixels, the
    region that fills the output (corner form x0..x0+width; outside the image the mean fills); flip: mirror
    the output left-right; boxes: float32 (m, 4) corner form 0..1 of the output; labels: int64 (m,).
    """

    photometric: PhotometricParameters
    window: np.ndarray
    flip: bool
    boxes: np.ndarray
    labels: np.ndarray


def _step(recipe: TrainAugmentation, kind):
    found = [step for step in recipe.steps if isinstance(step, kind)]
    return found[0] if found else None


def sample_parameters(recipe: TrainAugmentation, width: int, height: int, boxes, labels) -> AugmentationParameters:
    """Draw the recipe's parameters for a ``width`` x ``height`` image with ``boxes`` (n, 4) pixel corners and
    ``labels`` (n,); the boxes come out exactly as ``recipe(image, boxes, labels)`` gives them."""
    boxes = clip_boxes(as_boxes(boxes), width, height)
    labels = as_labels(labels, len(boxes))
    keep = valid_box_mask(boxes)
    boxes, labels = boxes[keep], labels[keep]
    photometric_step = _step(recipe, PhotometricDistort)
    photometric = photometric_step.sample() if photometric_step is not None else PhotometricParameters()
    expand, crop_step, flip_step = (_step(recipe, Expand), _step(recipe, RandomIoUCrop),
                                    _step(recipe, RandomHorizontalFlip))
    offset_x = offset_y = 0
    canvas_width, canvas_height = width, height
    placement = expand.sample(width, height) if expand is not None else None
    if placement is not None:
        canvas_width, canvas_height, offset_x, offset_y = placement
        boxes = expand_boxes(boxes, offset_x, offset_y)
    crop = crop_step.sample(canvas_width, canvas_height, boxes) if crop_step is not None else None
    left, top, crop_width, crop_height = 0, 0, canvas_width, canvas_height
    if crop is not None:
        rectangle, kept = crop
        boxes, labels = crop_boxes(boxes, labels, rectangle, kept)
        left, top, right, bottom = (int(v) for v in rectangle)
        crop_width, crop_height = right - left, bottom - top
    flip = flip_step.sample() if flip_step is not None else False
    if flip:
        boxes = flip_boxes(boxes, crop_width)
    boxes, labels = to_relative_boxes(boxes, labels, crop_width, crop_height)
    window = np.array([left - offset_x, top - offset_y, crop_width, crop_height], dtype=np.float64)
    return AugmentationParameters(photometric, window, flip, boxes, labels)


def output_to_source(window: np.ndarray, flip: bool, output_size: Tuple[int, int]) -> np.ndarray:
    """float64 (2, 2) ``[[scale_x, offset_x], [scale_y, offset_y]]``: source pixel coordinate = scale *
    output coordinate + offset, continuous coordinates (pixel i spans i..i+1), as cv2.resize samples."""
    x0, y0, window_width, window_height = (float(v) for v in window)
    out_width, out_height = output_size
    scale_x, scale_y = window_width / out_width, window_height / out_height
    if flip:
        return np.array([[-scale_x, x0 + window_width], [scale_y, y0]])
    return np.array([[scale_x, x0], [scale_y, y0]])


def coverage_1d(scale: float, offset: float, out_length: int, source_length: int) -> np.ndarray:
    """(out_length,) float32: the weight that bilinear sampling (zero outside) gives to the source's own pixels
    at each output pixel, 1 inside the image, 0 beyond half a pixel past it."""
    sample = scale * (np.arange(out_length) + 0.5) + offset - 0.5  # in source pixel indices
    return np.clip(np.minimum(sample + 1.0, source_length - sample), 0.0, 1.0).astype(np.float32)


class OnePassTrainAugmentation:
    """``TrainAugmentation`` with its geometry in one resampling pass and its colour steps at the output size.

    Same call shape and output as ``TrainAugmentation(size, mean, std)``, the same draws (same boxes for the
    same ``np.random`` state), and images that differ only by interpolation and by the order of colour and
    resampling (cv2.warpAffine, bilinear, the mean beyond the image). Faster on photos larger than the
    net's input, and on zoomed-out images (no canvas of up to 16x the photo's area).
    """

    def __init__(self, size, mean=0, std=1.0):
        self.size = as_width_height(size)
        self.mean = _rgb_triple(mean, "mean")
        self.inverse_std = 1.0 / _rgb_triple(std, "std")
        self.recipe = TrainAugmentation(size, mean, std)
        self._fill = tuple(float(v) for v in np.clip(np.rint(self.mean), 0, 255))

    def __call__(self, image, boxes=None, labels=None):
        image = _check_image(image)
        height, width = image.shape[:2]
        parameters = sample_parameters(self.recipe, width, height, boxes, labels)
        return self.render(image, parameters), parameters.boxes, parameters.labels

    def render(self, image: np.ndarray, parameters: AugmentationParameters) -> torch.Tensor:
        """float32 (3, height, width) normalised output of ``image`` (RGB uint8) under ``parameters``."""
        height, width = image.shape[:2]
        (scale_x, offset_x), (scale_y, offset_y) = output_to_source(parameters.window, parameters.flip, self.size)
        # warpAffine indexes pixel centres: index = scale * (j + 0.5) + offset - 0.5.
        matrix = np.array([[scale_x, 0.0, offset_x + 0.5 * scale_x - 0.5],
                           [0.0, scale_y, offset_y + 0.5 * scale_y - 0.5]])
        warped = cv2.warpAffine(image, matrix, self.size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=self._fill)
        warped = apply_photometric(warped, parameters.photometric)
        planes = np.ascontiguousarray(warped.transpose(2, 0, 1)).astype(np.float32)
        planes -= self.mean[:, None, None]
        # The recipe distorts the photo before zooming out, so the fill keeps the mean: put it back (0 after
        # normalising) where the output lies beyond the image.
        coverage_x = coverage_1d(scale_x, offset_x, self.size[0], width)
        coverage_y = coverage_1d(scale_y, offset_y, self.size[1], height)
        if coverage_x.min() < 1.0 or coverage_y.min() < 1.0:
            planes *= coverage_y[None, :, None] * coverage_x[None, None, :]
        planes *= self.inverse_std[:, None, None]
        return torch.from_numpy(planes)

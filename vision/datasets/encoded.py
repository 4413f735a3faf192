"""Training samples for the device-side recipe (``train_ssd.py --gpu_data``): the encoded file, its size, the
augmented boxes and the drawn parameters; the pixels are decoded and augmented later, batched, on the device
(``vision.training.gpu_augmentation``).

A worker here only reads the file, its header (size, EXIF orientation) and the annotation, and draws the
recipe's parameters (``vision.transforms.one_pass.sample_parameters``); bad samples are None after a
BadDataWarning naming the file, as in every data set, and ``vision.training.gpu_data.collate_encoded_batch``
drops and counts them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from vision.transforms.one_pass import AugmentationParameters, sample_parameters

from ..transforms.box_ops import clip_boxes, valid_box_mask
from .errors import BadImageError, warn_bad_data
from .images import read_image_bytes

_JPEG_START = b"\xff\xd8"


@dataclass
class EncodedSample:
    """encoded: uint8 (n,) the file's bytes; device_decodable: a JPEG needing no EXIF rotation; size: (width,
    height) as decoded (EXIF applied); parameters: the recipe's draw, with the augmented boxes."""

    encoded: np.ndarray
    device_decodable: bool
    size: Tuple[int, int]
    parameters: AugmentationParameters


def read_header(data: np.ndarray, path) -> Tuple[Tuple[int, int], bool]:
    """``((width, height) after EXIF rotation, device_decodable)`` from an encoded image's header. Raises
    BadImageError naming ``path`` when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
            is_jpeg = image.format == "JPEG"
    except (OSError, UnidentifiedImageError) as error:
        raise BadImageError(f"image file {path} cannot be decoded (corrupt or not an image): {error}") from error
    if orientation in (5, 6, 7, 8):  # turned by 90 degrees
        width, height = height, width
    return (width, height), bool(is_jpeg and orientation in (0, 1) and data[:2].tobytes() == _JPEG_START)


def _locate(dataset, index: int):
    """(the data set holding sample ``index``, its index there); ConcatDetectionDataset is looked through."""
    if hasattr(dataset, "_locate"):
        return dataset._locate(index)
    return dataset, index


class EncodedTrainingSamples(torch.utils.data.Dataset):
    """``dataset`` (any of vision.datasets, built without transforms) as EncodedSample, drawn by ``recipe`` (a
    ``TrainAugmentation``, whose steps' probabilities are used). ``samples[i]`` is None for a bad sample."""

    def __init__(self, dataset, recipe):
        self.dataset = dataset
        self.recipe = recipe

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Optional[EncodedSample]:
        dataset, offset = _locate(self.dataset, index)
        image_id, (boxes, labels, difficult) = dataset.get_annotation(offset)
        if getattr(dataset, "is_bad_annotation", lambda i: False)(offset):
            warn_bad_data(f"skipping image {image_id}: its annotation is malformed or missing")
            return None
        path = dataset.image_path(image_id)
        try:
            data = read_image_bytes(path)
            (width, height), device_decodable = read_header(data, path)
        except BadImageError as error:
            warn_bad_data(f"skipping image {image_id}: {error}")
            return None
        if not getattr(dataset, "keep_difficult", False):
            keep = np.asarray(difficult).reshape(-1) == 0
            boxes, labels = boxes[keep], labels[keep]
        boxes = clip_boxes(np.array(boxes, dtype=np.float32).reshape(-1, 4), width, height)
        valid = valid_box_mask(boxes)
        if not valid.all():
            warn_bad_data(f"{path}: dropped {int((~valid).sum())} box(es) that lie outside the {width}x{height} image")
        parameters = sample_parameters(self.recipe, width, height, boxes[valid], np.asarray(labels)[valid])
        return EncodedSample(data, device_decodable, (width, height), parameters)

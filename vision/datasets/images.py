"""Reading images for the datasets: RGB uint8 numpy, with corrupt files detected rather than half-read."""
from pathlib import Path
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from ..utils.image_files import image_bytes_problem
from .errors import BadImageError, warn_bad_data


def read_rgb_image(path) -> np.ndarray:
    """The image at `path` as RGB uint8 numpy (H, W, 3) (grey images are made 3-channel; EXIF rotation
    applied, as cv2.imread does). Raises BadImageError naming the file if it is missing, empty,
    undecodable, or a truncated JPEG."""
    path = Path(path)
    data = read_image_bytes(path)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise BadImageError(f"image file {path} cannot be decoded (corrupt or not an image)")
    return image


def read_image_bytes(path) -> np.ndarray:
    """The encoded file at `path` as uint8 numpy (n,), not decoded. Raises BadImageError naming the file if it
    is missing, empty or a truncated JPEG."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise BadImageError(f"cannot read image {path}: {error.strerror or error}") from error
    problem = image_bytes_problem(data)  # the rule the example script applies too
    if problem is not None:
        raise BadImageError(f"image file {path} {problem}")
    return data


def read_image_size(path) -> Tuple[int, int]:
    """(width, height) of the image at `path` as read_rgb_image would return it (EXIF rotation applied),
    from the file header only. Raises BadImageError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            # EXIF orientations 5..8 turn the image by 90 degrees.
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
    except (OSError, UnidentifiedImageError) as error:
        raise BadImageError(f"cannot read the size of image {path}: {error}") from error
    return width, height


def read_or_skip(read: Callable[[str], np.ndarray], image_id: str) -> Optional[np.ndarray]:
    """``read(image_id)``, or None with a BadDataWarning naming the file when it cannot be read."""
    try:
        return read(image_id)
    except BadImageError as error:
        warn_bad_data(f"skipping image {image_id}: {error}")
        return None


def transform_image(transform, image: Optional[np.ndarray]):
    """A dataset's ``transform`` applied to an image alone (``get_image``); None stays None."""
    if transform is None or image is None:
        return image
    result = transform(image)
    return result[0] if isinstance(result, tuple) else result


def apply_transforms(transform, target_transform, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray):
    """A dataset sample after its ``transform(image, boxes, labels)`` and ``target_transform(boxes, labels)``,
    each skipped when None."""
    if transform:
        image, boxes, labels = transform(image, boxes, labels)
    if target_transform:
        boxes, labels = target_transform(boxes, labels)
    return image, boxes, labels

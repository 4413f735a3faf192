"""Reading images for the datasets: RGB uint8 numpy, with corrupt files detected rather than half-read."""
from pathlib import Path
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from .errors import BadImageError, warn_bad_data

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
# A JPEG whose end-of-image marker is not within this many bytes of the end of the file is taken as
# truncated: OpenCV decodes such a file with only a "Premature end of JPEG file" message on stderr and
# returns an image whose missing part is grey. (Files with more than this much trailing data after the
# marker are rare and would be skipped, with a warning naming them.)
_JPEG_END_SEARCH = 1024


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
    if data.size == 0:
        raise BadImageError(f"image file {path} is empty")
    head = data[:2].tobytes()
    if head == _JPEG_START and _JPEG_END not in data[-_JPEG_END_SEARCH:].tobytes():
        raise BadImageError(f"image file {path} is a truncated JPEG (no end-of-image marker)")
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

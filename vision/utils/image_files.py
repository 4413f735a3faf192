"""Reading image files with corrupt ones detected rather than half-read; no torch import (the example
script's ONNX backend and the data sets share it).

OpenCV decodes a truncated JPEG with only a "Premature end of JPEG file" message on stderr and returns an
image whose missing part is grey; :func:`image_bytes_problem` catches that before decoding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
# A JPEG whose end-of-image marker is not within this many bytes of the end of the file is taken as
# truncated. (Files with more than this much trailing data after the marker are rare and would be
# rejected, with a message naming them.)
JPEG_END_SEARCH = 1024


class UnreadableImageError(OSError):
    """An image file that is missing, empty, truncated or undecodable; the message names the file."""


def image_bytes_problem(data: np.ndarray) -> Optional[str]:
    """What is wrong with an encoded image (uint8 ``(n,)``) before decoding it: ``"is empty"``, ``"is a
    truncated JPEG (no end-of-image marker)"``, or None."""
    if data.size == 0:
        return "is empty"
    if data[:2].tobytes() == JPEG_START and JPEG_END not in data[-JPEG_END_SEARCH:].tobytes():
        return "is a truncated JPEG (no end-of-image marker)"
    return None


def read_bgr_image(path) -> np.ndarray:
    """The image at ``path`` as BGR uint8 ``(H, W, 3)``, as ``cv2.imread`` gives it (grey made 3-channel,
    EXIF rotation applied). Raises UnreadableImageError naming the file when it is missing, empty,
    truncated or not an image."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise UnreadableImageError(f"{path}: cannot read the image ({error.strerror or error})") from None
    problem = image_bytes_problem(data)
    if problem is not None:
        raise UnreadableImageError(f"{path}: the image file {problem}")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImageError(f"{path}: cannot be decoded (corrupt or not an image)")
    return image

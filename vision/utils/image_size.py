"""Input sizes as ``(width, height)`` pixels: parsing ``--resolution`` values and normalising ``int`` sizes.

``512`` means 512x512; ``640x360`` means 640 wide, 360 high (the order OpenCV's ``cv2.resize`` takes).
No torch import: the ONNX side uses it too.
"""
from __future__ import annotations

import re
from typing import Sequence, Tuple, Union

ImageSize = Tuple[int, int]  # (width, height) in pixels
SizeLike = Union[int, Sequence[int]]

_RESOLUTION = re.compile(r"^\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*$")


def as_width_height(size: SizeLike) -> ImageSize:
    """``(width, height)`` from an ``int`` (a square) or a ``(width, height)`` pair; ValueError otherwise."""
    if isinstance(size, bool):
        raise ValueError(f"an image size is an int or (width, height), got {size!r}")
    if isinstance(size, int) or (hasattr(size, "__index__") and not isinstance(size, (str, bytes))):
        width = height = int(size)
    else:
        try:
            width, height = (int(value) for value in size)
        except (TypeError, ValueError):
            raise ValueError(f"an image size is an int or (width, height), got {size!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"an image size must be positive, got {width}x{height}")
    return width, height


def parse_resolution(text: str) -> ImageSize:
    """``"512"`` -> ``(512, 512)``; ``"640x360"`` -> ``(640, 360)``. ValueError with the expected forms."""
    match = _RESOLUTION.match(str(text))
    if not match:
        raise ValueError(f"--resolution {text!r}: expected N (a square, e.g. 512) or WxH (e.g. 640x360)")
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) is not None else width
    return as_width_height((width, height))


def format_size(size: SizeLike) -> str:
    """``"512x512"``-style text, width first (the form ``--resolution`` takes)."""
    width, height = as_width_height(size)
    return f"{width}x{height}"

"""Image files for a detector: the images named by files, folders and glob patterns, and writing a result
image atomically. Used by ``run_ssd_example.py`` and Python code that runs a detector over files.

    paths, several = expand_images(["photos/", "extra/*.png"])
    write_image("out/result.jpg", annotated_bgr)
"""
from __future__ import annotations

import glob
import os
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from vision.utils.atomic import write_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def expand_images(arguments: Sequence[str]) -> Tuple[List[str], bool]:
    """Image paths from files, folders (their images by extension, sorted) and glob patterns, in the
    order given; and whether the input is several images (more than one argument, or any folder or
    pattern). Raises FileNotFoundError naming the argument that gives no image."""
    paths: List[str] = []
    several = len(arguments) > 1
    for argument in arguments:
        if os.path.isdir(argument):
            several = True
            found = sorted(os.path.join(argument, name) for name in os.listdir(argument)
                           if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(argument, name)))
            if not found:
                raise FileNotFoundError(f"{argument}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths += found
        elif os.path.isfile(argument):
            paths.append(argument)
        elif glob.has_magic(argument):
            several = True
            found = sorted(path for path in glob.glob(argument) if os.path.isfile(path))
            if not found:
                raise FileNotFoundError(f"{argument}: no file matches the pattern")
            paths += found
        else:
            raise FileNotFoundError(f"{argument}: no such image file")
    return paths, several


def write_image(path: str, image: np.ndarray) -> None:
    """Write a BGR uint8 ``(H, W, 3)`` image to ``path`` atomically, in the format of its extension.
    One-line OSError naming ``path`` when OpenCV has no encoder for it or the file cannot be written."""
    extension = os.path.splitext(path)[1]
    try:
        # Encoded in memory: the staged temporary name has no extension for OpenCV to pick the format by.
        encoded, data = cv2.imencode(extension, image)
    except cv2.error as error:  # OpenCV 5 raises where older versions returned False
        reason = next((line.strip() for line in str(error).splitlines() if "error:" in line), str(error).strip())
        raise OSError(f"{path}: cannot write the image ({reason[:160]}); "
                      "use an extension such as .jpg or .png") from None
    if not encoded:
        raise OSError(f"{path}: cannot write the image; use an extension such as .jpg or .png, in a writable folder")
    write_bytes(path, data.tobytes())

"""Where the benchmarks find their inputs: the shared folder beside the checkout when it has them
(``$SSD_SHARED_DIR``, by default ``../shared``), else images drawn by the project's own generator, so
that every benchmark also runs in a clone with nothing beside it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from vision.datasets.synthetic import render_image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSD_SHARED_DIR") or ROOT.parent / "shared")
PHOTO = SHARED / "reference" / "images" / "000138.jpg"
VOC_SAMPLE = SHARED / "datasets" / "voc2007-sample"


def benchmark_photo() -> Tuple[str, np.ndarray]:
    """``(name, RGB uint8 (H, W, 3))``: the VOC photo 000138.jpg (500x332) when the shared folder has it,
    else a generated picture of the same size with four shapes (named ``generated``)."""
    image = cv2.imread(str(PHOTO)) if PHOTO.is_file() else None
    if image is not None:
        return PHOTO.name, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image, _ = render_image((138, 0), width=500, height=332, num_objects=4)
    return "generated", image


def voc_sample_root() -> Optional[Path]:
    """The genuine VOC sample's root, or None when the shared folder lacks it."""
    return VOC_SAMPLE if (VOC_SAMPLE / "Annotations").is_dir() else None

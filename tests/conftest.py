"""Shared fixtures and the data the tests read.

The reference facts about the original toolkit (state_dict keys, priors, configurations, one forward pass)
are in the repository, under ``tests/data/`` (see its README.md), so the suite runs in a clone with nothing
beside it. Two things live outside the repository, in the shared folder (``$SSD_SHARED_DIR``, by default
``../shared`` beside the checkout; CI has it):

- the genuine VOC sample (``datasets/voc2007-sample``): tests that need it skip, with the reason, without it;
- two reference photographs (``reference/images``): without them :func:`photo_path` gives an image of the
  same size drawn by the project's own generator (``vision.datasets.synthetic``).
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "tests" / "data"
SHARED = Path(os.environ.get("SSD_SHARED_DIR") or REPO_ROOT.parent / "shared")
VOC_SAMPLE = SHARED / "datasets" / "voc2007-sample"
REFERENCE_PHOTOS = SHARED / "reference" / "images"
# The reference photographs by name, with their (width, height): a VOC2007 image and the original README's example.
PHOTO_SIZES = {"000138.jpg": (500, 332), "gun.jpg": (500, 667)}
# The original's net types: those with reference facts (the torchvision-based ones have none).
ORIGINAL_NET_TYPES = sorted(path.stem for path in (DATA_DIR / "keys").glob("*.json"))

torch.set_num_threads(min(2, torch.get_num_threads()))
# The predictor's CPU engines cache their ONNX exports (vision.ssd.engines): in a folder of the test session,
# not the user's cache.
_ENGINE_CACHE = tempfile.mkdtemp(prefix="ssd-engine-cache-")
atexit.register(shutil.rmtree, _ENGINE_CACHE, True)
os.environ["SSD_ENGINE_CACHE"] = _ENGINE_CACHE


def reference_keys(net_type: str) -> dict:
    """The original's state_dict of ``net_type`` (21 classes): ``{"state_dict": [[name, shape, dtype], ...],
    "num_params": int, ...}``, from ``tests/data/keys``."""
    return json.loads((DATA_DIR / "keys" / f"{net_type}.json").read_text())


def reference_priors(net_type: str) -> np.ndarray:
    """The original's priors of ``net_type``: float32 (P, 4), center form, 0..1, from ``tests/data/priors``."""
    return np.load(DATA_DIR / "priors" / f"{net_type}.npy")


def reference_config(net_type: str) -> dict:
    """The original's configuration of ``net_type`` (image size, mean, std, variances, prior specs)."""
    return json.loads((DATA_DIR / "config" / f"{net_type}.json").read_text())


def reference_forward(net_type: str = "mb1-ssd") -> Dict[str, np.ndarray]:
    """The original's outputs for the deterministic input and weights (see ``tests/data/README.md``):
    ``confidences``, ``locations`` (raw) and ``scores``, ``boxes`` (``is_test=True``)."""
    with np.load(DATA_DIR / "forward" / f"{net_type}.npz") as archive:
        return {name: archive[name] for name in archive.files}


def require_voc_sample() -> Path:
    """The genuine VOC sample's root; skips the calling test, saying where it looked, when it is absent."""
    if not (VOC_SAMPLE / "Annotations").is_dir():
        pytest.skip(f"genuine VOC sample not found at {VOC_SAMPLE} "
                    "(set SSD_SHARED_DIR to the folder holding datasets/voc2007-sample)")
    return VOC_SAMPLE


@pytest.fixture(scope="session")
def voc_sample_dir() -> Path:
    """The genuine VOC sample's root (``$SSD_SHARED_DIR/datasets/voc2007-sample``); skips without it."""
    return require_voc_sample()


def reference_photos_present() -> bool:
    return all((REFERENCE_PHOTOS / name).is_file() for name in PHOTO_SIZES)


@functools.lru_cache(maxsize=None)
def _generated_photo_dir() -> Path:
    """A folder (removed at exit) holding one generated JPEG per reference photo, of the same size:
    ``generated-<stem>.jpg``."""
    from vision.datasets.synthetic import render_image

    folder = Path(tempfile.mkdtemp(prefix="ssd-test-photos-"))
    atexit.register(shutil.rmtree, folder, True)
    for index, (name, (width, height)) in enumerate(PHOTO_SIZES.items()):
        image, _ = render_image((138, index), width=width, height=height, num_objects=4)
        assert cv2.imwrite(str(folder / f"generated-{name}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def photo_dir() -> Path:
    """A folder holding exactly one image per :data:`PHOTO_SIZES` entry: the reference photos when the shared
    folder has them, else generated stand-ins."""
    return REFERENCE_PHOTOS if reference_photos_present() else _generated_photo_dir()


def photo_path(name: str = "000138.jpg") -> Path:
    """The reference photo ``name`` (a key of :data:`PHOTO_SIZES`), or its generated stand-in of the same size."""
    if name not in PHOTO_SIZES:
        raise KeyError(f"no reference photo {name}; known: {', '.join(PHOTO_SIZES)}")
    return REFERENCE_PHOTOS / name if reference_photos_present() else _generated_photo_dir() / f"generated-{name}"


def photo_paths() -> List[Path]:
    """:func:`photo_path` of every photo, in sorted file-name order (as a folder glob lists them)."""
    return sorted((photo_path(name) for name in PHOTO_SIZES), key=lambda path: path.name)


def rgb_photo(name: str = "000138.jpg") -> np.ndarray:
    """:func:`photo_path` ``(name)`` read as RGB uint8 (H, W, 3)."""
    image = cv2.imread(str(photo_path(name)))
    assert image is not None, f"cannot read {photo_path(name)}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

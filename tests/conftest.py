"""Shared fixtures. ``../shared`` (reference facts, a genuine VOC sample) lies beside the checkout, in CI too."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSD_SHARED_DIR", REPO_ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
VOC_SAMPLE = SHARED / "datasets" / "voc2007-sample"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE} (set SSD_SHARED_DIR)")
    return REFERENCE


@pytest.fixture(scope="session")
def voc_sample_dir() -> Path:
    if not VOC_SAMPLE.is_dir():
        pytest.fail(f"VOC sample not found at {VOC_SAMPLE} (set SSD_SHARED_DIR)")
    return VOC_SAMPLE


def reference_keys(net_type: str) -> dict:
    return json.loads((REFERENCE / "keys" / f"{net_type}.json").read_text())

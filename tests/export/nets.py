"""Nets for the deployment tests: the deterministic reference weights, with each head rescaled so the
outputs look like a trained net's (moderate class logits, small box offsets).

Untrained weights make some nets (vgg16-ssd, mb3-large-ssd-lite) emit logits in the hundreds and box
offsets whose exponential reaches 1e11 image sizes: softmax saturates to ties at 1.0 and float32
rounding dominates, which says nothing about an export. Rescaling the last convolution of each head
keeps everything else (backbone, extras, priors, decoding) as it is.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from vision.export.checks import sample_images
from vision.export.onnx_export import export_onnx
from vision.ssd.registry import create_net
from vision.ssd.ssd import SSD
from vision.utils.reference_weights import load_deterministic_weights

LOGIT_SPREAD = 1.5
OFFSET_SPREAD = 0.5


def realistic_net(net_type: str, num_classes: int = 3) -> SSD:
    """A ``net_type`` net (``is_test=True``, eval mode, CPU) with calibrated deterministic weights."""
    net = load_deterministic_weights(create_net(net_type, num_classes, is_test=True)).eval()
    calibrate_heads(net)
    return net


@torch.no_grad()
def calibrate_heads(net: SSD) -> None:
    """Scale each head's last convolution so its outputs on the sample images have standard deviation
    LOGIT_SPREAD (classification) or OFFSET_SPREAD (regression)."""
    config = net.config
    batch = np.stack([cv2.resize(image, config.image_size) for image in sample_images()])  # (width, height)
    batch = (torch.from_numpy(batch).permute(0, 3, 1, 2).float()
             - torch.tensor(config.image_mean, dtype=torch.float32).view(1, 3, 1, 1)) / config.image_std
    spreads = {}

    def record(module, inputs, output, target):
        spreads[module] = (target, output.std().item())

    hooks = []
    for target, heads in ((LOGIT_SPREAD, net.classification_headers), (OFFSET_SPREAD, net.regression_headers)):
        for head in heads:
            hooks.append(head.register_forward_hook(lambda *args, target=target: record(*args, target)))
    net(batch)
    for hook in hooks:
        hook.remove()
    for head, (target, spread) in spreads.items():
        last_conv = [module for module in head.modules() if isinstance(module, nn.Conv2d)][-1]
        last_conv.weight.mul_(target / spread)
        if last_conv.bias is not None:
            last_conv.bias.mul_(target / spread)


# -- shared, cached artefacts (one per test session) -------------------------------------------------
CLASS_NAMES = ["BACKGROUND", "cat", "dog"]
_WORK_DIR = None


def work_dir() -> Path:
    """A temporary folder for the whole test session, removed at exit."""
    global _WORK_DIR
    if _WORK_DIR is None:
        _WORK_DIR = Path(tempfile.mkdtemp(prefix="ssd-export-tests-"))
        atexit.register(shutil.rmtree, _WORK_DIR, True)
    return _WORK_DIR


@functools.lru_cache(maxsize=None)
def cached_net(net_type: str) -> SSD:
    """``realistic_net(net_type)`` with CLASS_NAMES, built once. Shared: copy it before changing it."""
    return realistic_net(net_type, len(CLASS_NAMES))


@functools.lru_cache(maxsize=None)
def exported_model(net_type: str, dynamic_batch: bool = False, with_postprocess: bool = False,
                   exporter: str = "torchscript", candidate_size: int = 200) -> Path:
    """The ``.onnx`` export of ``cached_net(net_type)``, made once per session (side files beside it)."""
    opset = 18 if exporter == "dynamo" else 13
    name = f"{net_type}-{'dynamic' if dynamic_batch else 'static'}-{exporter}"
    name += f"-postprocess{candidate_size}" if with_postprocess else ""
    path = work_dir() / f"{name}.onnx"
    export_onnx(cached_net(net_type), net_type, CLASS_NAMES, path, opset=opset, dynamic_batch=dynamic_batch,
                exporter=exporter, with_postprocess=with_postprocess, candidate_size=candidate_size)
    return path


@functools.lru_cache(maxsize=None)
def saved_checkpoint(net_type: str) -> Path:
    """``cached_net(net_type)`` saved as a bare state_dict, with a label file ``<net>-labels.txt`` beside it."""
    path = work_dir() / f"{net_type}.pth"
    cached_net(net_type).save(str(path))
    label_path(net_type).write_text("".join(f"{name}\n" for name in CLASS_NAMES))
    return path


def label_path(net_type: str) -> Path:
    return work_dir() / f"{net_type}-labels.txt"


def rgb_photo(name: str = "000138.jpg") -> np.ndarray:
    """A reference photo as RGB uint8, or its generated stand-in without the shared folder (see tests/conftest.py)."""
    from tests.conftest import rgb_photo as conftest_rgb_photo

    return conftest_rgb_photo(name)

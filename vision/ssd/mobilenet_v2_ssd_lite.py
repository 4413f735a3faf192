"""mb2-ssd-lite: SSD-Lite on MobileNetV2 (Sandler et al.), as the original toolkit builds it."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vision.nn.mobilenet_v2 import InvertedResidual, MobileNetV2
from vision.ssd.config import mobilenetv1_ssd_config as config
from vision.ssd.heads import separable_conv_bn
from vision.ssd.predictor import Predictor
from vision.ssd.ssd import SSD, GraphPath


def create_mobilenetv2_ssd_lite(num_classes: int, width_mult: float = 1.0, use_batch_norm: bool = True,
                                onnx_compatible: bool = False, is_test: bool = False) -> SSD:
    """mb2-ssd-lite for ``num_classes`` classes (background included); 3000 priors at 300x300.

    ``onnx_compatible`` swaps ReLU6 for ReLU in the base net and in the regression heads 2-5, exactly
    where the original does (its extras, classification heads and first regression head keep ReLU6),
    so checkpoints trained either way give the original's outputs.
    """
    base_net = MobileNetV2(width_mult=width_mult, use_batch_norm=use_batch_norm,
                           onnx_compatible=onnx_compatible).features
    # First head: inside block 14, after its expansion (conv, BN, ReLU6); second: after the last layer.
    source_layer_indexes = [GraphPath(14, "conv", 3), 19]
    extras = nn.ModuleList([
        InvertedResidual(1280, 512, stride=2, expand_ratio=0.2),
        InvertedResidual(512, 256, stride=2, expand_ratio=0.25),
        InvertedResidual(256, 256, stride=2, expand_ratio=0.5),
        InvertedResidual(256, 64, stride=2, expand_ratio=0.25),
    ])
    channels = [round(576 * width_mult), 1280, 512, 256, 256]
    relu_per_regression_head = [False] + [onnx_compatible] * 4
    regression_headers = nn.ModuleList(
        [separable_conv_bn(c, 6 * 4, kernel_size=3, padding=1, onnx_compatible=relu)
         for c, relu in zip(channels, relu_per_regression_head)]
        + [nn.Conv2d(64, 6 * 4, kernel_size=1)]
    )
    classification_headers = nn.ModuleList(
        [separable_conv_bn(c, 6 * num_classes, kernel_size=3, padding=1) for c in channels]
        + [nn.Conv2d(64, 6 * num_classes, kernel_size=1)]
    )
    return SSD(num_classes, base_net, source_layer_indexes, extras, classification_headers, regression_headers,
               is_test=is_test, config=config.native_config)


def create_mobilenetv2_ssd_lite_predictor(net: SSD, candidate_size: int = 200, nms_method: Optional[str] = None,
                                          sigma: float = 0.5, device: Optional[torch.device] = None) -> Predictor:
    return Predictor.from_config(net, net.config, candidate_size=candidate_size, nms_method=nms_method, sigma=sigma,
                                 device=device)

"""mb1-ssd-lite: SSD-Lite on MobileNetV1 (separable convs in extras and heads)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vision.nn.mobilenet_v1 import MobileNetV1
from vision.ssd.config import mobilenetv1_ssd_config as config
from vision.ssd.heads import lite_headers, separable_conv
from vision.ssd.predictor import Predictor
from vision.ssd.ssd import SSD


def _extra(in_channels: int, middle: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, middle, kernel_size=1), nn.ReLU(),
        separable_conv(middle, out_channels, kernel_size=3, stride=2, padding=1),
    )


def create_mobilenetv1_ssd_lite(num_classes: int, is_test: bool = False) -> SSD:
    """mb1-ssd-lite for ``num_classes`` classes (background included); 3000 priors at 300x300."""
    base_net = MobileNetV1(1001).model
    source_layer_indexes = [12, 14]
    extras = nn.ModuleList([_extra(1024, 256, 512), _extra(512, 128, 256), _extra(256, 128, 256),
                            _extra(256, 128, 256)])
    channels = [512, 1024, 512, 256, 256, 256]
    return SSD(num_classes, base_net, source_layer_indexes, extras,
               lite_headers(channels, 6 * num_classes, separable_conv), lite_headers(channels, 6 * 4, separable_conv),
               is_test=is_test, config=config.native_config)


def create_mobilenetv1_ssd_lite_predictor(net: SSD, candidate_size: int = 200, nms_method: Optional[str] = None,
                                          sigma: float = 0.5, device: Optional[torch.device] = None) -> Predictor:
    return Predictor.from_config(net, net.config, candidate_size=candidate_size, nms_method=nms_method, sigma=sigma,
                                 device=device)

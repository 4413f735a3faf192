"""mb3-large-ssd-lite and mb3-small-ssd-lite: SSD-Lite on MobileNetV3, as the original toolkit builds them."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vision.nn.mobilenet_v3 import Block, MobileNetV3Large, MobileNetV3Small
from vision.ssd.config import mobilenetv1_ssd_config as config
from vision.ssd.heads import separable_conv_bn
from vision.ssd.predictor import Predictor
from vision.ssd.ssd import SSD


def _ssd_lite(num_classes: int, base_net: nn.Module, source_layer_indexes: list, first_channels: int,
              last_channels: int, is_test: bool) -> SSD:
    extras = nn.ModuleList([
        Block(3, last_channels, 256, 512, nn.Hardswish(), None, stride=2),
        Block(3, 512, 128, 256, nn.Hardswish(), None, stride=2),
        Block(3, 256, 128, 256, nn.Hardswish(), None, stride=2),
        Block(3, 256, 64, 64, nn.Hardswish(), None, stride=2),
    ])
    channels = [first_channels, last_channels, 512, 256, 256]

    def headers(out_per_location: int) -> nn.ModuleList:
        return nn.ModuleList([separable_conv_bn(c, out_per_location, kernel_size=3, padding=1) for c in channels]
                             + [nn.Conv2d(64, out_per_location, kernel_size=1)])

    return SSD(num_classes, base_net, source_layer_indexes, extras, headers(6 * num_classes), headers(6 * 4),
               is_test=is_test, config=config.native_config)


def create_mobilenetv3_large_ssd_lite(num_classes: int, width_mult: float = 1.0, use_batch_norm: bool = True,
                                      onnx_compatible: bool = False, is_test: bool = False) -> SSD:
    """mb3-large-ssd-lite; heads on the 112-channel block (stride 16) and the final 960-channel map.

    ``width_mult`` scales the first head's input as the original does (the backbone stays at width 1).
    ``use_batch_norm`` and ``onnx_compatible`` are accepted because the original's signature has them and
    users' code passes them; as in the original they are ignored (BatchNorm and ReLU6 in the heads,
    Hardswish in the extras, whatever they say)."""
    return _ssd_lite(num_classes, MobileNetV3Large().features, [15, 21], round(112 * width_mult), 960, is_test)


def create_mobilenetv3_small_ssd_lite(num_classes: int, width_mult: float = 1.0, use_batch_norm: bool = True,
                                      onnx_compatible: bool = False, is_test: bool = False) -> SSD:
    """mb3-small-ssd-lite; heads on the 48-channel block (stride 16) and the final 576-channel map.

    ``width_mult``, ``use_batch_norm`` and ``onnx_compatible`` behave as in
    :func:`create_mobilenetv3_large_ssd_lite`: the last two are accepted and ignored, as in the original."""
    return _ssd_lite(num_classes, MobileNetV3Small().features, [11, 17], round(48 * width_mult), 576, is_test)


def create_mobilenetv3_ssd_lite_predictor(net: SSD, candidate_size: int = 200, nms_method: Optional[str] = None,
                                          sigma: float = 0.5, device: Optional[torch.device] = None) -> Predictor:
    return Predictor.from_config(net, net.config, candidate_size=candidate_size, nms_method=nms_method, sigma=sigma,
                                 device=device)

"""sq-ssd-lite: SSD-Lite on SqueezeNet 1.1."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vision.nn.squeezenet import squeezenet1_1_features
from vision.ssd.config import squeezenet_ssd_config as config
from vision.ssd.heads import lite_headers, separable_conv
from vision.ssd.predictor import Predictor
from vision.ssd.ssd import SSD


def _extra(in_channels: int, middle: int, out_channels: int, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, middle, kernel_size=1), nn.ReLU(),
        separable_conv(middle, out_channels, kernel_size=3, stride=2, padding=padding),
    )


def create_squeezenet_ssd_lite(num_classes: int, is_test: bool = False) -> SSD:
    """sq-ssd-lite for ``num_classes`` classes (background included); 2568 priors at 300x300.

    The original's first extra layer (padding 1) turns the 17x17 map into 9x9 while its priors expect
    10x10, so its net gives 2454 predictions for 2568 priors and cannot train or predict. Padding 2
    gives 10x10 and matches the priors; it changes no weight shape, so checkpoints still load.
    """
    base_net = squeezenet1_1_features()
    source_layer_indexes = [12]
    extras = nn.ModuleList([
        _extra(512, 256, 512, padding=2),
        _extra(512, 256, 512),
        _extra(512, 128, 256),
        _extra(256, 128, 256),
        _extra(256, 128, 256),
    ])
    channels = [512, 512, 512, 256, 256, 256]
    return SSD(num_classes, base_net, source_layer_indexes, extras,
               lite_headers(channels, 6 * num_classes, separable_conv), lite_headers(channels, 6 * 4, separable_conv),
               is_test=is_test, config=config.native_config)


def create_squeezenet_ssd_lite_predictor(net: SSD, candidate_size: int = 200, nms_method: Optional[str] = None,
                                         sigma: float = 0.5, device: Optional[torch.device] = None) -> Predictor:
    return Predictor.from_config(net, net.config, candidate_size=candidate_size, nms_method=nms_method, sigma=sigma,
                                 device=device)

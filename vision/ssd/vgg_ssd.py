"""vgg16-ssd: SSD300 on VGG16, with a BatchNorm on conv4_3 where the paper has L2Norm (as the original)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vision.nn.vgg import SSD_VGG16_CONFIG, vgg
from vision.ssd.config import vgg_ssd_config as config
from vision.ssd.heads import conv_headers
from vision.ssd.predictor import Predictor
from vision.ssd.ssd import SSD


def _extra(in_channels: int, middle: int, out_channels: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, middle, kernel_size=1), nn.ReLU(),
        nn.Conv2d(middle, out_channels, kernel_size=3, stride=stride, padding=padding), nn.ReLU(),
    )


def create_vgg_ssd(num_classes: int, is_test: bool = False) -> SSD:
    """vgg16-ssd for ``num_classes`` classes (background included); 8732 priors at 300x300."""
    base_net = nn.ModuleList(vgg(SSD_VGG16_CONFIG))
    source_layer_indexes = [(23, nn.BatchNorm2d(512)), len(base_net)]  # after conv4_3's ReLU, then conv7
    extras = nn.ModuleList([
        _extra(1024, 256, 512, stride=2, padding=1),
        _extra(512, 128, 256, stride=2, padding=1),
        _extra(256, 128, 256, stride=1, padding=0),
        _extra(256, 128, 256, stride=1, padding=0),
    ])
    channels = [512, 1024, 512, 256, 256, 256]
    priors_per_map = [4, 6, 6, 6, 4, 4]
    return SSD(num_classes, base_net, source_layer_indexes, extras,
               conv_headers(channels, priors_per_map, num_classes), conv_headers(channels, priors_per_map, 4),
               is_test=is_test, config=config.native_config)


def create_vgg_ssd_predictor(net: SSD, candidate_size: int = 200, nms_method: Optional[str] = None, sigma: float = 0.5,
                             device: Optional[torch.device] = None) -> Predictor:
    return Predictor.from_config(net, net.config, candidate_size=candidate_size, nms_method=nms_method, sigma=sigma,
                                 device=device)

"""Building blocks of SSD-Lite heads and extras: depthwise-separable replacements for 3x3 convs."""
from __future__ import annotations

from torch import nn


def separable_conv(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Depthwise conv (with bias) -> ReLU -> pointwise 1x1 (mb1-ssd-lite, sq-ssd-lite)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding, groups=in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def separable_conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                      onnx_compatible: bool = False) -> nn.Sequential:
    """Depthwise conv (with bias) -> BatchNorm -> ReLU6 (ReLU when ``onnx_compatible``) -> pointwise 1x1
    (mb2-ssd-lite, mb3-*-ssd-lite)."""
    relu = nn.ReLU if onnx_compatible else nn.ReLU6
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding, groups=in_channels),
        nn.BatchNorm2d(in_channels),
        relu(),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def lite_headers(in_channels: list, out_per_location: int, separable, last_kernel_size: int = 1) -> nn.ModuleList:
    """SSD-Lite heads: a 3x3 separable conv on each feature map but the last, which gets a plain 1x1 conv.

    in_channels: channels of each feature map; out_per_location: priors per location x (classes or 4).
    """
    heads = [separable(c, out_per_location, kernel_size=3, padding=1) for c in in_channels[:-1]]
    heads.append(nn.Conv2d(in_channels[-1], out_per_location, kernel_size=last_kernel_size))
    return nn.ModuleList(heads)


def conv_headers(in_channels: list, priors_per_map: list, out_per_prior: int) -> nn.ModuleList:
    """Plain SSD heads: a 3x3 conv (padding 1) on each feature map."""
    return nn.ModuleList(
        [nn.Conv2d(c, a * out_per_prior, kernel_size=3, padding=1) for c, a in zip(in_channels, priors_per_map)]
    )

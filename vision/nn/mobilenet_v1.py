"""MobileNetV1 (Howard et al. 2017) with ReLU, laid out as the original toolkit's ``MobileNetV1``."""
from __future__ import annotations

from torch import Tensor, nn


def conv_bn(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_dw(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """``model`` is the 14-block feature extractor SSD uses as its base net; ``fc`` the classifier."""

    def __init__(self, num_classes: int = 1024):
        super().__init__()
        widths = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)]
        widths += [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
        self.model = nn.Sequential(conv_bn(3, 32, 2), *[conv_dw(i, o, s) for i, o, s in widths])
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.model(x)
        x = x.mean(dim=(2, 3))
        return self.fc(x)

"""MobileNetV3 large and small (Howard et al. 2019) as the original toolkit builds them.

Laid out like the original (``features`` = stem conv, BN, h-swish, the bottleneck blocks, final 1x1 conv,
BN, h-swish) so released mb3-*-ssd-lite checkpoints load by name.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn


class SeModule(nn.Module):
    """Squeeze-and-excitation with BatchNorm and hard-sigmoid gating."""

    def __init__(self, in_size: int, reduction: int = 4):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_size, in_size // reduction, kernel_size=1, bias=False),
            nn.BatchNorm2d(in_size // reduction),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_size // reduction, in_size, kernel_size=1, bias=False),
            nn.BatchNorm2d(in_size),
            nn.Hardsigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.se(x)


class Block(nn.Module):
    """Expand 1x1 -> depthwise kxk -> project 1x1, optional SE after the projection; shortcut at stride 1
    (a 1x1 conv + BN when the channel count changes)."""

    def __init__(self, kernel_size: int, in_size: int, expand_size: int, out_size: int, nolinear: nn.Module,
                 semodule: Optional[nn.Module], stride: int):
        super().__init__()
        self.stride = stride
        self.se = semodule  # registered first: the checkpoints list it before conv1
        self.conv1 = nn.Conv2d(in_size, expand_size, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(expand_size)
        self.nolinear1 = nolinear
        self.conv2 = nn.Conv2d(expand_size, expand_size, kernel_size=kernel_size, stride=stride,
                               padding=kernel_size // 2, groups=expand_size, bias=False)
        self.bn2 = nn.BatchNorm2d(expand_size)
        self.nolinear2 = nolinear
        self.conv3 = nn.Conv2d(expand_size, out_size, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_size)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_size != out_size:
            self.shortcut = nn.Sequential(nn.Conv2d(in_size, out_size, kernel_size=1, bias=False),
                                          nn.BatchNorm2d(out_size))

    def forward(self, x: Tensor) -> Tensor:
        out = self.nolinear1(self.bn1(self.conv1(x)))
        out = self.nolinear2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return out + self.shortcut(x) if self.stride == 1 else out


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


def _features(stem: int, blocks: list, last: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, stem, kernel_size=3, stride=2, padding=1, bias=False), nn.BatchNorm2d(stem), nn.Hardswish(),
        *blocks,
        nn.Conv2d(blocks[-1].bn3.num_features, last, kernel_size=1, bias=False), nn.BatchNorm2d(last), nn.Hardswish(),
    )


class MobileNetV3Large(nn.Module):
    """``features`` has 21 modules; its 15th output (112 channels, stride 16) and last (960) feed SSD-Lite."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        hs = nn.Hardswish
        self.features = _features(16, [
            Block(3, 16, 16, 16, _relu(), None, 1),
            Block(3, 16, 64, 24, _relu(), None, 2),
            Block(3, 24, 72, 24, _relu(), None, 1),
            Block(5, 24, 72, 40, _relu(), SeModule(40), 2),
            Block(5, 40, 120, 40, _relu(), SeModule(40), 1),
            Block(5, 40, 120, 40, _relu(), SeModule(40), 1),
            Block(3, 40, 240, 80, hs(), None, 2),
            Block(3, 80, 200, 80, hs(), None, 1),
            Block(3, 80, 184, 80, hs(), None, 1),
            Block(3, 80, 184, 80, hs(), None, 1),
            Block(3, 80, 480, 112, hs(), SeModule(112), 1),
            Block(3, 112, 672, 112, hs(), SeModule(112), 1),
            Block(5, 112, 672, 160, hs(), SeModule(160), 1),
            Block(5, 160, 672, 160, hs(), SeModule(160), 2),
            Block(5, 160, 960, 160, hs(), SeModule(160), 1),
        ], 960)
        self.classifier = nn.Sequential(nn.Linear(960, 1280), nn.BatchNorm1d(1280), nn.Hardswish(),
                                        nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class MobileNetV3Small(nn.Module):
    """``features`` has 17 modules; its 11th output (48 channels, stride 16) and last (576) feed SSD-Lite."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        hs = nn.Hardswish
        self.features = _features(16, [
            Block(3, 16, 16, 16, _relu(), SeModule(16), 2),
            Block(3, 16, 72, 24, _relu(), None, 2),
            Block(3, 24, 88, 24, _relu(), None, 1),
            Block(5, 24, 96, 40, hs(), SeModule(40), 2),
            Block(5, 40, 240, 40, hs(), SeModule(40), 1),
            Block(5, 40, 240, 40, hs(), SeModule(40), 1),
            Block(5, 40, 120, 48, hs(), SeModule(48), 1),
            Block(5, 48, 144, 48, hs(), SeModule(48), 1),
            Block(5, 48, 288, 96, hs(), SeModule(96), 2),
            Block(5, 96, 576, 96, hs(), SeModule(96), 1),
            Block(5, 96, 576, 96, hs(), SeModule(96), 1),
        ], 576)
        self.classifier = nn.Sequential(nn.Linear(576, 1280), nn.BatchNorm1d(1280), nn.Hardswish(),
                                        nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))

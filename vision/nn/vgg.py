"""VGG16 base net of SSD: the layers of the original ``vgg()`` builder, with SSD's pool5/conv6/conv7."""
from __future__ import annotations

from typing import List, Sequence, Union

from torch import nn

# 'M' is a 2x2 max pool, 'C' the same with ceil_mode (gives 38x38 at 300x300 input).
SSD_VGG16_CONFIG: List[Union[int, str]] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M",
                                           512, 512, 512]


def vgg(cfg: Sequence[Union[int, str]], batch_norm: bool = False) -> List[nn.Module]:
    """Layers of SSD's VGG base net as a flat list (indexes match the original's state_dict names).

    Ends with pool5 (3x3, stride 1), dilated conv6 (1024) and conv7 (1x1, 1024), each conv followed by ReLU.
    """
    layers: List[nn.Module] = []
    in_channels = 3
    for value in cfg:
        if value == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif value == "C":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            conv = nn.Conv2d(in_channels, value, kernel_size=3, padding=1)
            layers += ([conv, nn.BatchNorm2d(value), nn.ReLU(inplace=True)] if batch_norm
                       else [conv, nn.ReLU(inplace=True)])
            in_channels = value
    pool5 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
    conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6)
    conv7 = nn.Conv2d(1024, 1024, kernel_size=1)
    layers += [pool5, conv6, nn.ReLU(inplace=True), conv7, nn.ReLU(inplace=True)]
    return layers

"""MobileNetV2 (Sandler et al. 2018) as the original toolkit builds it.

ReLU6 by default, ReLU with ``onnx_compatible``; BatchNorm optional (``use_batch_norm``) except in the
first conv, which always has it (as the original). Layer order and names match the released
mb2-ssd-lite checkpoints.
"""
from __future__ import annotations

from torch import Tensor, nn


def _relu(onnx_compatible: bool) -> type:
    return nn.ReLU if onnx_compatible else nn.ReLU6


def conv_bn(in_channels: int, out_channels: int, stride: int, use_batch_norm: bool = True,
            onnx_compatible: bool = False) -> nn.Sequential:
    relu = _relu(onnx_compatible)
    layers = [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)]
    layers += [nn.BatchNorm2d(out_channels)] if use_batch_norm else []
    return nn.Sequential(*layers, relu(inplace=True))


def conv_1x1_bn(in_channels: int, out_channels: int, use_batch_norm: bool = True,
                onnx_compatible: bool = False) -> nn.Sequential:
    relu = _relu(onnx_compatible)
    layers = [nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False)]
    layers += [nn.BatchNorm2d(out_channels)] if use_batch_norm else []
    return nn.Sequential(*layers, relu(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when expand_ratio is 1) -> depthwise 3x3 -> linear 1x1; residual when the shape allows."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: float, use_batch_norm: bool = True,
                 onnx_compatible: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        relu = _relu(onnx_compatible)
        hidden_dim = round(inp * expand_ratio)
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup

        def bn(channels: int) -> list:
            return [nn.BatchNorm2d(channels)] if use_batch_norm else []

        layers: list = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False), *bn(hidden_dim), relu(inplace=True)]
        layers += [nn.Conv2d(hidden_dim, hidden_dim, 3, stride, 1, groups=hidden_dim, bias=False), *bn(hidden_dim),
                   relu(inplace=True)]
        layers += [nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), *bn(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` (19 modules) is SSD-Lite's base net; ``classifier`` the ImageNet head."""

    # expansion t, channels c, repeats n, first stride s
    SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                [6, 320, 1, 1]]

    def __init__(self, n_class: int = 1000, input_size: int = 224, width_mult: float = 1.0, dropout_ratio: float = 0.2,
                 use_batch_norm: bool = True, onnx_compatible: bool = False):
        super().__init__()
        input_channel = int(32 * width_mult)
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        features = [conv_bn(3, input_channel, 2, onnx_compatible=onnx_compatible)]
        for t, c, n, s in self.SETTINGS:
            output_channel = int(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t,
                                                 use_batch_norm=use_batch_norm, onnx_compatible=onnx_compatible))
                input_channel = output_channel
        features.append(conv_1x1_bn(input_channel, self.last_channel, use_batch_norm=use_batch_norm,
                                    onnx_compatible=onnx_compatible))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout_ratio), nn.Linear(self.last_channel, n_class))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        return self.classifier(x.mean(dim=(2, 3)))

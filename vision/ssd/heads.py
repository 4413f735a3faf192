"""Building blocks of SSD-Lite heads and extras: depthwise-separable replacements for 3x3 convs."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor, nn


def separable_conv(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                   padding: int = 0) -> nn.Sequential:
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


def class_count(state_dict: Mapping[str, Union[Tensor, Sequence[int]]], priors_per_location: Sequence[int]
                ) -> Optional[int]:
    """The class count (background included) an SSD state_dict was built for, read from its classification
    heads: the outputs of each head's last layer divided by that map's priors per location. None when a
    head is missing, an output count does not divide, or the heads disagree. This is the toolkit's one
    rule for it; it needs no net, only the prior rule's ``priors_per_location()``. The values may be
    tensors or shapes."""
    counts = set()
    for head, per_location in enumerate(priors_per_location):
        prefix = f"classification_headers.{head}."
        parameters = [key for key in state_dict if key.startswith(prefix) and key.endswith((".weight", ".bias"))]
        if not parameters:
            return None
        last_layer = max(parameters, key=_module_order).rsplit(".", 1)[0]
        shapes = [_shape(state_dict[f"{last_layer}.{name}"]) for name in ("bias", "weight")
                  if f"{last_layer}.{name}" in state_dict]
        outputs = next((shape[0] for shape in shapes if len(shape) >= 1), None)
        if outputs is None or per_location <= 0 or outputs % per_location:
            return None
        counts.add(outputs // per_location)
    return counts.pop() if len(counts) == 1 else None


def _module_order(key: str) -> Tuple[Tuple[int, str], ...]:
    """Sort key of a parameter name by its module path (``"...0.3.weight"`` after ``"...0.1.bias"``)."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in key.split(".")[:-1])


def _shape(value: Union[Tensor, Sequence[int]]) -> Tuple[int, ...]:
    return tuple(int(size) for size in (value.shape if hasattr(value, "shape") else value))

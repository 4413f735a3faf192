"""Measuring the feature maps a net's heads read at a given input size, and the smallest size that works.

The shapes come from the net itself: its ``feature_maps(x)`` (the head inputs, in head order) runs on an
empty batch ``(0, 3, height, width)``, so every layer computes its output shape and no arithmetic is
done (milliseconds, even for vgg16-ssd at 1024x1024). Priors built from these shapes always match the
heads.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from vision.ssd.priors import FeatureMapShapes
from vision.utils.image_size import SizeLike, as_width_height, format_size

MIN_INPUT_SIDE = 64  # below this every net type's deepest maps carry almost nothing
_SEARCH_LIMIT = 4096


class InputSizeError(ValueError):
    """An input size at which a net cannot run; the message names the smallest size that works."""


def measure_feature_map_shapes(net: nn.Module, image_size: SizeLike) -> FeatureMapShapes:
    """``(rows, cols)`` of each map ``net``'s heads read for an input of ``image_size`` ``(width, height)``.
    Raises :class:`InputSizeError` when a map would be empty. The net's train/eval modes are kept."""
    shapes = _try_measure(net, as_width_height(image_size))
    if shapes is None:
        raise InputSizeError(_too_small_message(net, image_size))
    return shapes


def smallest_input_side(net: nn.Module) -> int:
    """The smallest ``N`` (at least :data:`MIN_INPUT_SIDE`) such that ``N x N`` runs. Each axis of a
    convolutional net is computed on its own, so this is also the smallest width and the smallest height."""
    low, high = 1, _SEARCH_LIMIT
    if _try_measure(net, (high, high)) is None:
        return high
    while low < high:  # bisect: sizes at or above the smallest one all work
        middle = (low + high) // 2
        if _try_measure(net, (middle, middle)) is None:
            low = middle + 1
        else:
            high = middle
    return max(low, MIN_INPUT_SIDE)


def check_input_size(net: nn.Module, image_size: SizeLike, net_name: Optional[str] = None) -> FeatureMapShapes:
    """:func:`measure_feature_map_shapes`, also refusing sides below :data:`MIN_INPUT_SIDE`; the error
    message starts with ``net_name`` when given."""
    width, height = as_width_height(image_size)
    shapes = _try_measure(net, (width, height)) if min(width, height) >= MIN_INPUT_SIDE else None
    if shapes is None:
        message = _too_small_message(net, (width, height))
        raise InputSizeError(f"{net_name}: {message}" if net_name else message)
    return shapes


def _too_small_message(net: nn.Module, image_size: SizeLike) -> str:
    width, height = as_width_height(image_size)
    smallest = smallest_input_side(net)
    reason = (f"a side is below {MIN_INPUT_SIDE} pixels" if min(width, height) < MIN_INPUT_SIDE <= smallest
              and _try_measure(net, (width, height)) is not None else "a feature map the heads read would be empty")
    return (f"input size {format_size(image_size)} is too small ({reason}); the smallest size that works is "
            f"{smallest} ({smallest}x{smallest}, or at least {smallest} pixels on each side)")


def _try_measure(net: nn.Module, image_size: Tuple[int, int]) -> Optional[FeatureMapShapes]:
    width, height = image_size
    parameter = next(net.parameters())
    modes = [(module, module.training) for module in net.modules()]
    net.eval()  # BatchNorm in training mode refuses an empty batch
    try:
        with torch.no_grad():
            maps = net.feature_maps(torch.zeros(0, 3, height, width, dtype=parameter.dtype, device=parameter.device))
    except RuntimeError:  # a convolution or pooling whose input is smaller than its window
        return None
    finally:
        for module, training in modes:
            module.training = training
    shapes = tuple((int(feature_map.shape[-2]), int(feature_map.shape[-1])) for feature_map in maps)
    if any(rows < 1 or cols < 1 for rows, cols in shapes):
        return None
    return shapes

"""BatchNorm folding for CPU inference: a copy of the net with each ``Conv2d -> BatchNorm2d`` pair replaced
by one convolution (torch's ``fuse_conv_bn_eval``, directly or through ``torch.fx``'s ``fuse``).

The user's net is never modified: fusion works on a deep copy. :class:`FusedNetCache` keeps that copy
in step with the net, rebuilding it whenever a parameter or buffer of the net changed (a state_dict
loaded, an optimiser step: PyTorch bumps each tensor's version counter on an in-place change).
"""
from __future__ import annotations

import copy
from typing import Optional, Tuple

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse as fx_fuse
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in eval mode with BatchNorm folded into the preceding convolutions.

    Inside an ``nn.Sequential``, each ``Conv2d`` directly followed by a ``BatchNorm2d`` is folded with
    ``torch.nn.utils.fusion.fuse_conv_bn_eval`` (the BatchNorm becomes ``nn.Identity``). Any other module
    holding a BatchNorm (a MobileNetV3 block, whose forward is code, not a sequence) is traced with
    ``torch.fx`` and folded by ``torch.fx.experimental.optimization.fuse``, which folds a pair only when
    the convolution feeds the BatchNorm alone; a module fx cannot trace is searched one level down.
    The SSD itself is never traced (its forward slices ``base_net``). ``net`` is left as it was.
    """
    fused = copy.deepcopy(net).eval()
    with torch.no_grad():
        _fold_children(fused)
    return fused


def _fold_children(module: nn.Module) -> None:
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats
                    and conv.out_channels == norm.num_features):
                # Folded in float64, then back: the folded weights then carry one float32 rounding, not several.
                module._modules[first] = fuse_conv_bn_eval(copy.deepcopy(conv).double(),
                                                           copy.deepcopy(norm).double()).to(conv.weight.dtype)
                module._modules[second] = nn.Identity()
    for child in module.children():
        _fold_children(child)
    # What sequences could not fold: trace the module, unless it is a container (the SSD indexes into those).
    for name, child in module.named_children():
        if count_batchnorms(child) and not isinstance(child, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            try:
                module._modules[name] = fx_fuse(child)
            except Exception:  # noqa: BLE001 - fx raises many kinds of errors for code it cannot trace
                pass


def count_batchnorms(net: nn.Module) -> int:
    """How many ``BatchNorm2d`` modules ``net`` holds (0 after :func:`fuse_batchnorm` for these nets)."""
    return sum(isinstance(module, nn.BatchNorm2d) for module in net.modules())


class FusedNetCache:
    """The fused copy of one net, rebuilt when the net's weights, device or ``is_test`` flag change."""

    def __init__(self) -> None:
        self._fused: Optional[nn.Module] = None
        self._key: Optional[Tuple] = None

    @staticmethod
    def _state_key(net: nn.Module) -> Tuple:
        tensors = list(net.parameters()) + list(net.buffers())
        return (id(net), getattr(net, "is_test", None),
                tuple((id(tensor), tensor._version, tensor.device) for tensor in tensors))

    def get(self, net: nn.Module) -> nn.Module:
        """The fused copy of ``net`` (see :func:`fuse_batchnorm`), made again only when ``net`` changed."""
        key = self._state_key(net)
        if key != self._key:
            self._fused, self._key = fuse_batchnorm(net), key
        return self._fused

"""SGD with the original toolkit's three parameter groups, and its freezing options."""
from __future__ import annotations

import itertools
from typing import List, Optional

import torch
from torch import nn

from vision.utils.misc import freeze_net_layers as freeze


def parameter_groups(net: nn.Module, lr: float, base_net_lr: Optional[float] = None,
                     extra_layers_lr: Optional[float] = None, freeze_base_net: bool = False,
                     freeze_net: bool = False) -> List[dict]:
    """The original's groups: base net (``base_net_lr``), source-layer add-ons + extras
    (``extra_layers_lr``), heads (``lr``); both default to ``lr``.

    ``freeze_base_net`` freezes the base net and drops its group; ``freeze_net`` freezes everything but
    the heads. Freezing happens here, on ``net``.
    """
    base_net_lr = lr if base_net_lr is None else base_net_lr
    extra_layers_lr = lr if extra_layers_lr is None else extra_layers_lr
    heads = {"params": list(itertools.chain(net.regression_headers.parameters(),
                                            net.classification_headers.parameters()))}
    extras = {"params": list(itertools.chain(net.source_layer_add_ons.parameters(), net.extras.parameters())),
              "lr": extra_layers_lr}
    if freeze_net:
        for part in (net.base_net, net.source_layer_add_ons, net.extras):
            freeze(part)
        return [heads]
    if freeze_base_net:
        freeze(net.base_net)
        return [extras, heads]
    return [{"params": list(net.base_net.parameters()), "lr": base_net_lr}, extras, heads]


def create_optimizer(groups: List[dict], lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def create_scheduler(optimizer: torch.optim.Optimizer, name: str, milestones: str, gamma: float,
                     t_max: float) -> torch.optim.lr_scheduler.LRScheduler:
    """``multi-step`` (milestones "80,100", factor ``gamma``) or ``cosine`` (period ``t_max`` epochs);
    stepped once per epoch, after it."""
    if name == "multi-step":
        try:
            steps = [int(value) for value in milestones.split(",") if value.strip()]
        except ValueError:
            raise ValueError(f"--milestones must be comma-separated epochs such as 80,100, "
                             f"got {milestones!r}") from None
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=steps, gamma=gamma)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t_max)
    raise ValueError(f"unsupported scheduler {name!r}: choose multi-step or cosine")

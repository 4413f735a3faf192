"""Deterministic weights from state_dict names and shapes alone, by the rule with which the original's
outputs were recorded (``forward/mb1-ssd.npz`` of the reference data, copied to ``tests/data/``). The
benchmarks and demo use them in place of trained weights, so they need no download."""
from __future__ import annotations

import math
from typing import Dict

import torch


def deterministic_state_dict(template: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Weights for every entry of ``template`` (a state_dict; only names, shapes and order of ``sorted``
    matter): name ``i`` in sorted order draws from ``torch.Generator().manual_seed(1000 + i)``."""
    weights = {}
    for index, name in enumerate(sorted(template)):
        shape = tuple(template[name].shape)
        generator = torch.Generator().manual_seed(1000 + index)
        if name.endswith("num_batches_tracked"):
            weights[name] = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("running_var"):
            weights[name] = torch.rand(shape, generator=generator) * 0.5 + 0.75
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            weights[name] = torch.randn(shape, generator=generator) * math.sqrt(1.75 / fan_in)
        elif name.endswith(".weight"):
            weights[name] = 1 + torch.randn(shape, generator=generator) * 0.05
        else:
            weights[name] = torch.randn(shape, generator=generator) * 0.05
    return weights


def load_deterministic_weights(net: torch.nn.Module) -> torch.nn.Module:
    """Fill ``net`` with :func:`deterministic_state_dict` weights and return it."""
    net.load_state_dict(deterministic_state_dict(net.state_dict()))
    return net

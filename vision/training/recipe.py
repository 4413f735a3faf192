"""The parts of the training recipe beyond the original's: a linear learning-rate warmup and an
exponential moving average (EMA) of the weights, which is what is validated and saved.

Both are off unless asked (``--warmup_epochs``, ``--ema_decay``): ``benchmarks/bench_priors.py`` has
a run for each (``auto_512_warmup``, ``auto_512_ema``) to decide whether they should be on by default.
Neither changes a file format: a saved ``.pth`` holds the averaged weights as a bare
state_dict, and ``last.pth`` holds the raw weights (to resume) and the average (``ema``).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The learning-rate factor at global ``step`` (0-based) of a linear warmup over ``warmup_steps``:
    ``(step + 1) / warmup_steps``, then 1."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


class WeightAverage:
    """An exponential moving average of ``net``'s parameters and buffers (BatchNorm statistics included),
    on torch's ``AveragedModel``. The decay grows with the number of updates, ``min(decay, (1 + n) /
    (10 + n))``, so that a short run's average is not dominated by its untrained start; ``average`` is the
    averaged net (same class and state_dict names as ``net``)."""

    def __init__(self, net: nn.Module, decay: float = 0.999):
        self.decay = float(decay)
        self.average = AveragedModel(net, multi_avg_fn=self._update, use_buffers=True)

    @torch.no_grad()
    def _update(self, averaged, current, num_averaged) -> None:
        """``AveragedModel``'s hook, called per group of tensors of one device and dtype."""
        updates = int(num_averaged)
        decay = min(self.decay, (1 + updates) / (10 + updates))
        for average, value in zip(averaged, current):
            if average.is_floating_point():
                average.lerp_(value, 1 - decay)
            else:  # counters (BatchNorm's num_batches_tracked) follow the net
                average.copy_(value)

    def update(self, net: nn.Module) -> None:
        self.average.update_parameters(net)

    @property
    def net(self) -> nn.Module:
        """The averaged net itself (``AveragedModel.module``)."""
        return self.average.module

    def state_dict(self) -> Dict[str, Any]:
        return {"model": self.net.state_dict(), "updates": int(self.average.n_averaged), "decay": self.decay}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.average.n_averaged.fill_(int(state["updates"]))


def ema_decay_description(decay: Optional[float]) -> str:
    return "off" if not decay else f"decay {decay:g}, warming up as (1 + n) / (10 + n)"


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    return int(math.ceil(max(0.0, epochs) * steps_per_epoch))

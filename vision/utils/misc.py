"""The original toolkit's ``vision.utils.misc``: its helpers under their old names (``str2bool``, ``Timer``,
``freeze_net_layers``, ``store_labels``), for code that imports them; the scripts use them too."""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Dict

from vision.utils.labels import store_labels

if TYPE_CHECKING:  # no torch import at run time: the ONNX-only commands import str2bool from here
    from torch import nn

__all__ = ["Timer", "freeze_net_layers", "store_labels", "str2bool"]

TRUE_WORDS = ("true", "t", "yes", "y", "1", "on")
FALSE_WORDS = ("false", "f", "no", "n", "0", "off")


def str2bool(text: str | bool) -> bool:
    """A boolean flag value, as the original's ``str2bool`` flags (``--use_cuda``, ``--use_2007_metric``)
    take them: true/false, t/f, yes/no, y/n, 1/0, on/off in any case. Anything else is an argparse error
    (a one-line usage message), not a silent False as in the original."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, yes/no, 1/0), got {text!r}")


def freeze_net_layers(net: "nn.Module") -> None:
    """Stop gradients for every parameter of ``net``."""
    for parameter in net.parameters():
        parameter.requires_grad = False


class Timer:
    """Named stopwatches, as the original's: ``start(key)``, then ``end(key)`` returns the seconds since."""

    def __init__(self) -> None:
        self.clock: Dict[str, float] = {}

    def start(self, key: str) -> None:
        self.clock[key] = time.perf_counter()

    def end(self, key: str) -> float:
        if key not in self.clock:
            raise KeyError(f"{key!r} was never started")
        return time.perf_counter() - self.clock.pop(key)

"""The original toolkit's ``vision.utils.misc``: its helpers under their old names, for code that imports them."""
from __future__ import annotations

import time
from typing import Dict

from vision.cli.flags import str2bool
from vision.training.optimizer import freeze as freeze_net_layers
from vision.utils.labels import store_labels

__all__ = ["Timer", "freeze_net_layers", "store_labels", "str2bool"]


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

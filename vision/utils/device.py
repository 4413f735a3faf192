"""The torch device a ``--device`` value names, checked on this machine before anything runs on it."""
from __future__ import annotations

from typing import Optional

import torch


def torch_device(device: Optional[str], use_cuda: bool = True, local_rank: int = 0) -> torch.device:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``) when given, else ``cuda:<local_rank>`` when CUDA is
    available and ``use_cuda``, else the CPU. A one-line ValueError naming ``--device`` when the value is not
    a device name, names CUDA on a machine without it, or a CUDA index this machine does not have: torch
    itself would fail later, at the first tensor moved there, with a traceback."""
    if not device:
        if use_cuda and torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device}: not a device name; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    return chosen

"""The resumable training checkpoint (``last.pth``) and the exchangeable per-epoch state_dict.

``last.pth`` holds model, optimizer, scheduler, epoch, step, RNG states (as tensors) and the run's
arguments (a plain dict): all readable by ``torch.load(..., weights_only=True)``. Both files are
written atomically, so a run killed at any moment leaves either the previous file or the new one.
"""
from __future__ import annotations

import collections
import os
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from vision.utils.atomic import remove_stale_temporaries, save_torch

LAST_CHECKPOINT = "last.pth"


def prepare_checkpoint_folder(folder: str) -> List[str]:
    """Create ``folder`` (and parents) for a run's checkpoints and remove partial saves that a killed run
    left there; returns the removed paths. Raises ValueError (one line) when ``folder`` is a file."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--checkpoint_folder {folder}: is a file, not a folder; give a folder path")
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"--checkpoint_folder {folder}: a part of the path is a file, not a folder") from None
    return remove_stale_temporaries(folder)


def capture_rng_state() -> Dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as tensors."""
    python_version, python_state, python_gauss = random.getstate()
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    state = {
        "python": torch.tensor(list(python_state), dtype=torch.int64),
        "python_version": python_version,
        "python_gauss": python_gauss,
        "numpy_keys": torch.from_numpy(numpy_keys.astype(np.int64)),
        "numpy_pos": int(numpy_pos),
        "numpy_has_gauss": int(numpy_has_gauss),
        "numpy_gauss": float(numpy_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value: Any) -> Any:
    """Counters (MultiStepLR milestones) as plain dicts, which every torch's weights_only loader reads."""
    if isinstance(value, collections.Counter):
        return dict(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def save_training_checkpoint(path: str, model: torch.nn.Module, optimizer, scheduler, epoch: int, step: int,
                             args: Dict[str, Any], scaler=None, info: Optional[Dict[str, Any]] = None) -> None:
    """Write ``last.pth`` atomically: everything needed to continue at ``epoch + 1``. ``info``: plain
    values stored at the top level beside them (training stores ``net_type``, ``image_size`` ``[width,
    height]`` and ``class_names``)."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": _plain(scheduler.state_dict()),
        "epoch": epoch,
        "step": step,
        "rng": capture_rng_state(),
        "args": {key: value for key, value in args.items()
                 if isinstance(value, (str, int, float, bool, list, type(None)))},
    }
    if scaler is not None:
        checkpoint["scaler"] = scaler.state_dict()
    checkpoint.update(info or {})
    save_torch(checkpoint, path)


def is_training_checkpoint(checkpoint: Any) -> bool:
    return isinstance(checkpoint, dict) and {"model", "optimizer", "scheduler", "epoch"} <= set(checkpoint)


def load_scheduler_state(scheduler, state: Dict[str, Any]) -> None:
    state = dict(state)
    if "milestones" in state:
        state["milestones"] = collections.Counter(state["milestones"])
    scheduler.load_state_dict(state)

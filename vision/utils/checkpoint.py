"""Reading and writing checkpoints safely.

Two formats, kept apart: the bare state_dict that the original toolkit's users exchange
(``<net>-Epoch-<e>-Loss-<l>.pth``), and this project's training checkpoint (a dict with ``model``,
``optimizer``, ``scheduler``, ... for resuming). Both load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List

import torch


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated or not a checkpoint; the message names the file."""


def load_checkpoint_file(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with one-line errors naming the file."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if path.lower().endswith(".onnx"):
        raise CheckpointError(f"{path}: an ONNX model, not a PyTorch checkpoint; run_ssd_example.py and eval_ssd.py "
                              "read it with --backend onnx")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bad files (pickle, zip, EOF, ...)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if len(reason) > 160:
            reason = reason[:157] + "..."
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or wrong format: {reason})") from None


def extract_state_dict(checkpoint: Any, path: str) -> Dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint: a bare state_dict or a training checkpoint's ``model``.
    A ``module.`` prefix left by DistributedDataParallel is removed."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    elif isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: holds no model weights (expected a state_dict of tensors)")
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return dict(checkpoint)


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """Model weights from ``path`` (either format), on CPU."""
    return extract_state_dict(load_checkpoint_file(path), path)


TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".tmp-", ".pth"


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the partial files that :func:`atomic_save` leaves in ``folder`` when a run is killed during a
    save (``.tmp-*.pth``); returns their paths. Call it before a run starts writing there."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves a
    truncated file at ``path``. The file gets the usual permissions (0666 less the umask), not the
    temporary file's 0600."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX, dir=folder)
    try:
        os.fchmod(handle, 0o666 & ~current_umask())
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise

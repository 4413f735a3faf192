"""Reading and writing checkpoints safely.

Two formats, kept apart: the bare state_dict that the original toolkit's users exchange
(``<net>-Epoch-<e>-Loss-<l>.pth``), and this project's training checkpoint (a dict with ``model``,
``optimizer``, ``scheduler``, ... for resuming). Both load with ``torch.load(weights_only=True)``; both
are written by ``vision.utils.atomic.save_torch``.
"""
from __future__ import annotations

import os
from typing import Any, Dict

import torch

from vision.utils.errors import first_line


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
        reason = first_line(error, limit=160)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"(truncated or wrong format: {reason})") from None


def extract_state_dict(checkpoint: Any, path: str) -> Dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint: a bare state_dict or a training checkpoint's ``model``.
    A ``module.`` prefix left by DistributedDataParallel is removed."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    elif isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if (not isinstance(checkpoint, dict) or not checkpoint
            or not all(isinstance(v, torch.Tensor) for v in checkpoint.values())):
        raise CheckpointError(f"{path}: holds no model weights (expected a state_dict of tensors)")
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return dict(checkpoint)


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """Model weights from ``path`` (either format), on CPU."""
    return extract_state_dict(load_checkpoint_file(path), path)

"""What one training run is built from: :class:`TrainingSettings`, a frozen value with every choice
already resolved (device, input size, memory format, local weight files).

``train_ssd.py`` parses its flags once into it (``vision.cli.train_ssd``); Python code may build one
directly. The field names are the flags' names, so ``record()`` is what ``last.pth`` stores as the run's
arguments and what a resumed run compares with (``vision.training.resume``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

from vision.utils.image_size import ImageSize


@dataclass(frozen=True)
class TrainingSettings:
    """A training run's settings. Paths are local files (zoo names and URLs already downloaded);
    ``device`` is a torch device string (``"cpu"``, ``"cuda:0"``); ``image_size`` is the input ``(width,
    height)``, None for the net type's native size; ``channels_last`` is decided (not None); ``priors`` is
    ``default``, ``auto`` or a table file (None: the net type's own, or on a resume the checkpoint's).
    The other fields are ``train_ssd.py``'s flags of the same name (docs/training.md)."""

    datasets: Tuple[str, ...]
    net: str = "vgg16-ssd"
    device: str = "cpu"
    image_size: Optional[ImageSize] = None
    channels_last: bool = False
    dataset_type: str = "auto"
    validation_dataset: Optional[str] = None
    balance_data: bool = False
    freeze_base_net: bool = False
    freeze_net: bool = False
    mb2_width_mult: float = 1.0
    priors: Optional[str] = None
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.1
    base_net_lr: Optional[float] = None
    extra_layers_lr: Optional[float] = None
    base_net: Optional[str] = None
    pretrained_ssd: Optional[str] = None
    resume: Optional[str] = None
    scheduler: str = "multi-step"
    milestones: str = "80,100"
    t_max: float = 120
    batch_size: int = 32
    num_epochs: int = 120
    num_workers: int = 4
    validation_epochs: int = 5
    debug_steps: int = 100
    checkpoint_folder: str = "models/"
    seed: Optional[int] = None
    amp: bool = False
    log_dir: Optional[str] = None
    background_negatives: int = 0
    no_augmentation: bool = False
    gpu_data: bool = False
    freeze_bn: bool = False
    no_progress: bool = False
    warmup_epochs: float = 0.0
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", tuple(self.datasets))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(value) for value in self.image_size))

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def record(self) -> Dict[str, Any]:
        """The settings as plain values (lists for tuples), keyed by flag name: ``last.pth``'s ``args``."""
        values = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    def replace(self, **changes: Any) -> "TrainingSettings":
        """A copy with ``changes`` (the value itself never changes)."""
        return dataclasses.replace(self, **changes)

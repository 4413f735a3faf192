"""Batching for the DataLoader: dropping bad samples, counting them, and per-worker set-up.

Bad samples: a dataset's __getitem__ returns None for a sample it cannot use (unreadable image, malformed
annotation), after a BadDataWarning naming the file. The collate functions here drop those samples and
return how many they dropped, so the training loop can add them up and report them at the end of the
epoch. A batch can end up with fewer samples than asked for, or with none. (Evaluation batches are lists
of samples, built by vision.evaluation.data.make_loader.)
"""
import random
from typing import List, Optional, Sequence

import numpy as np
import torch


def _as_tensor(value, dtype: torch.dtype, what: str, index: int) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"sample {index}: {what} cannot be made a {dtype} tensor: {error}") from error


def _stack(tensors: List[torch.Tensor], what: str, indices: List[int]) -> torch.Tensor:
    for tensor, index in zip(tensors, indices):
        if tensor.shape != tensors[0].shape:
            raise ValueError(f"sample {index} has {what} of shape {tuple(tensor.shape)} but sample {indices[0]} "
                             f"has {tuple(tensors[0].shape)}; the transform must give every sample the same size")
    return torch.stack(tensors)


def collate_training_batch(samples: Sequence[Optional[tuple]]):
    """Training collate, for a dataset with transform=TrainAugmentation and target_transform=MatchPrior.

    samples: each None (a bad sample, dropped and counted) or (image float32 (3, H, W), gt_locations
    (P, 4) float, labels (P,) int) as tensors or numpy arrays.
    Returns (images float32 (N, 3, H, W), gt_locations float32 (N, P, 4), labels int64 (N, P),
    num_skipped: int), N = number of non-None samples. When every sample was None the tensors have N = 0
    (images (0, 3, 0, 0), gt_locations (0, 0, 4), labels (0, 0)): the training loop must skip that batch.
    Raises ValueError naming the sample whose shapes differ from the first's.
    """
    kept = [(index, sample) for index, sample in enumerate(samples) if sample is not None]
    num_skipped = len(samples) - len(kept)
    if not kept:
        return (torch.zeros(0, 3, 0, 0), torch.zeros(0, 0, 4), torch.zeros(0, 0, dtype=torch.int64), num_skipped)
    indices = [index for index, _ in kept]
    images = [_as_tensor(sample[0], torch.float32, "image", index) for index, sample in kept]
    locations = [_as_tensor(sample[1], torch.float32, "gt_locations", index) for index, sample in kept]
    labels = [_as_tensor(sample[2], torch.int64, "labels", index) for index, sample in kept]
    return (_stack(images, "image", indices), _stack(locations, "gt_locations", indices),
            _stack(labels, "labels", indices), num_skipped)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker set-up: torch at one thread (the workers already use the cores), and numpy's and
    Python's global generators seeded from the worker's torch seed, which differs per worker and per epoch
    (without this every worker would repeat the same augmentations).

    OpenCV's thread count is deliberately left alone: cv2.setNumThreads in a forked worker can deadlock when
    the parent process had already used OpenCV's thread pool, and one or two OpenCV threads make no
    measurable difference to a sample.
    """
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)

"""The ``--gpu_data`` training input: batches of encoded samples, augmented and matched on the device.

``collate_encoded_batch`` runs in the workers; ``DeviceAugmentedBatches`` wraps the DataLoader so that the
training loop sees the usual ``(images, gt_locations, labels, num_skipped)`` batches, already on the device.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from vision.datasets.encoded import EncodedSample
from vision.training.batched_matching import pad_ground_truth
from vision.training.gpu_augmentation import EncodedBatch, PhotometricBatch, windows_and_flips


def collate_encoded_batch(samples: Sequence[Optional[EncodedSample]]) -> EncodedBatch:
    """EncodedSamples (None ones dropped and counted) -> one EncodedBatch (B may be 0)."""
    kept = [sample for sample in samples if sample is not None]
    parameters = [sample.parameters for sample in kept]
    windows, flips = windows_and_flips(parameters) if kept else (torch.zeros(0, 4, dtype=torch.float64),
                                                                  torch.zeros(0, dtype=torch.bool))
    boxes, labels, mask = pad_ground_truth([p.boxes for p in parameters], [p.labels for p in parameters])
    # One buffer for the batch's files, seen as one view per file: the batch crosses from the worker as one
    # shared-memory block instead of one per image.
    sizes = [int(sample.encoded.size) for sample in kept]
    buffer = torch.from_numpy(np.concatenate([sample.encoded for sample in kept] or [np.zeros(0, np.uint8)]))
    return EncodedBatch(list(torch.split(buffer, sizes)),
                        [sample.device_decodable for sample in kept],
                        torch.tensor([sample.size for sample in kept], dtype=torch.int64).reshape(-1, 2),
                        windows, flips, PhotometricBatch.stack([p.photometric for p in parameters]),
                        boxes, labels, mask, len(samples) - len(kept))


class DeviceAugmentedBatches:
    """A DataLoader of EncodedBatch seen as the usual training batches: iterating yields ``(images (B, 3, H, W),
    gt_locations (B, P, 4), labels (B, P), num_skipped)`` on the device, made by ``augmentation``
    (a ``BatchedTrainAugmentation``); a batch of only bad samples has B = 0."""

    def __init__(self, loader, augmentation):
        self.loader = loader
        self.augmentation = augmentation
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if len(batch) == 0:
                yield (torch.zeros(0, 3, 0, 0), torch.zeros(0, 0, 4), torch.zeros(0, 0, dtype=torch.int64),
                       batch.num_skipped)
                continue
            images, locations, labels = self.augmentation(batch)
            yield images, locations, labels, batch.num_skipped

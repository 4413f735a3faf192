"""A plain transcription of the original toolkit's ``Predictor.predict``: one class and one box at a time.

Kept as the slow reference that tests compare the batched predictor with, and that the benchmark
times as the baseline on the same machine.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from vision.utils import box_utils


def original_predict(predictor, image: np.ndarray, top_k: int = -1, prob_threshold=None):
    """``(boxes (K, 4) pixels, labels (K,), probs (K,))`` computed as the original does, on the CPU."""
    height, width, _ = image.shape
    resized = cv2.resize(image, tuple(predictor.size)).astype(np.float32)  # predictor.size is (width, height)
    normalised = (resized - predictor.mean.view(3).cpu().numpy()) / predictor.std
    batch = torch.from_numpy(normalised).permute(2, 0, 1).unsqueeze(0).to(predictor.device)
    with torch.no_grad():
        scores, boxes = predictor.net(batch)
    scores, boxes = scores[0].cpu(), boxes[0].cpu()
    threshold = prob_threshold or predictor.filter_threshold
    picked, labels = [], []
    for class_index in range(1, scores.size(1)):
        probs = scores[:, class_index]
        mask = probs > threshold
        if mask.sum() == 0:
            continue
        box_probs = torch.cat([boxes[mask], probs[mask].reshape(-1, 1)], dim=1)
        order = box_probs[:, 4].argsort(descending=True)[:predictor.candidate_size]
        chosen = []
        while len(order) > 0:
            current = order[0]
            chosen.append(current.item())
            if 0 < top_k == len(chosen) or len(order) == 1:
                break
            order = order[1:]
            iou = box_utils.iou_of(box_probs[order, :4], box_probs[current, :4].unsqueeze(0))
            order = order[iou <= predictor.iou_threshold]
        picked.append(box_probs[chosen])
        labels += [class_index] * len(chosen)
    if not picked:
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    picked = torch.cat(picked)
    picked[:, [0, 2]] *= width
    picked[:, [1, 3]] *= height
    return picked[:, :4], torch.tensor(labels), picked[:, 4]

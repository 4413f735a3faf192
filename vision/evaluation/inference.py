"""The inference loop of evaluation: batches of images through ``Predictor.predict_batch``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

import torch

from vision.evaluation.records import RecordCollector

EVAL_PROB_THRESHOLD = 0.01  # the original eval's predictor.filter_threshold


@dataclass
class InferenceTiming:
    """Wall-clock seconds of the loop (loading overlaps prediction when workers are used)."""

    num_images: int
    seconds: float
    skipped_ids: list = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else float("nan")


def run_inference(
    predictor,
    loader: Iterable,
    collector: RecordCollector,
    prob_threshold: float = EVAL_PROB_THRESHOLD,
    top_k: int = -1,
    progress: bool = True,
    total: int | None = None,
) -> InferenceTiming:
    """Predict every batch of EvalSamples the loader yields and hand samples and outputs to the collector.

    Samples whose image is None (the data sets return None, with a warning, for an unreadable image or
    a malformed annotation) are skipped: neither predicted nor scored; their ids go to ``skipped_ids``.

    predictor: has ``predict_batch(images: list of (H, W, 3) uint8 RGB, top_k, prob_threshold)`` returning
    one ``(boxes (K, 4) corner pixels 0-based, labels (K,), probs (K,))`` per image.
    Shows a tqdm progress bar in images/s on stderr when ``progress``.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc="eval", disable=not progress, dynamic_ncols=True)
    num_images, skipped_ids = 0, []
    start = time.perf_counter()
    with torch.inference_mode():
        for samples in loader:
            readable = [sample for sample in samples if sample.image is not None]
            skipped_ids.extend(sample.image_id for sample in samples if sample.image is None)
            if readable:
                outputs = predictor.predict_batch(
                    [sample.image for sample in readable], top_k=top_k, prob_threshold=prob_threshold
                )
                collector.process(readable, outputs)
            num_images += len(readable)
            bar.update(len(samples))
    seconds = time.perf_counter() - start
    bar.close()
    return InferenceTiming(num_images=num_images, seconds=seconds, skipped_ids=skipped_ids)

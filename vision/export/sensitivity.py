"""Mixed precision for INT8: which convolutions to keep in float32, found by measurement.

A sensitivity pass, as accuracy-aware quantization tools make one. The network part is quantized whole (the
starting point), then once per convolution with that convolution alone left in float32, and each file's
outputs are compared with the float32 file's on the search images (calibration or validation images):
:func:`output_error`. A convolution whose float32 copy removes much of the error is one whose quantization
hurts. Then the worst are kept in float32, one more at a time in that order, until ``accept`` (for example:
validation mAP within 0.01 of float32) says the file is good enough, or, without ``accept``, as long as each
kept one alone removed at least ``significance`` of the error; never more than ``max_float_layers``.

    prepared = PreparedModel("models/mb2-ssd-lite.onnx", calibration_images, work_folder)
    result = find_float_layers(prepared, Int8Settings(), search_images)
    quantize_onnx("models/mb2-ssd-lite.onnx", "models/mb2-ssd-lite.int8.onnx", calibration_images,
                  settings=replace(Int8Settings(), keep_float=result.keep_float), prepared=prepared)

Every trial file reuses the activation ranges calibrated once (``PreparedModel``), so one trial costs a
quantization and a few forward passes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vision.export.onnx_predictor import OnnxPredictor
from vision.export.quantize import Int8Settings, PreparedModel, quantize_onnx

# Without an accept rule a convolution is kept in float32 when keeping it alone removes this share of the
# whole INT8 file's output error: one such layer is a quantization failure, not rounding spread thinly.
DEFAULT_SIGNIFICANCE = 0.1
DEFAULT_MAX_FLOAT_LAYERS = 8
# Search images the pipeline takes from the calibration images: enough for stable output errors, few
# enough for a quick trial.
SEARCH_IMAGES = 16
# Without an accept rule the ranking is skipped when the whole INT8 file's output error is below this: scores
# moved by under 2 % on average, where a collapsing layer moves them by far more (the trained mb2-ssd-lite
# of docs/benchmarks.md: 0.0008; the planted collapse of tests/export/test_sensitivity.py: 0.13).
DEFAULT_ERROR_GATE = 0.02
# Box errors count where the float32 net sees an object (its best foreground score above this).
BOX_SCORE_FLOOR = 0.1

Outputs = Dict[str, np.ndarray]
Accept = Callable[[str], Tuple[bool, float]]


def output_error(reference: Sequence[Outputs], candidate: Sequence[Outputs]) -> float:
    """How far ``candidate``'s outputs are from ``reference``'s (one ``{"scores", "boxes"}`` per batch): the
    mean absolute difference of the foreground scores over all priors, plus that of the box corners (0..1)
    over the priors where the reference's best foreground score is above ``BOX_SCORE_FLOOR``."""
    score_errors, box_errors = [], []
    for want, got in zip(reference, candidate):
        score_errors.append(np.abs(got["scores"][..., 1:] - want["scores"][..., 1:]).mean())
        seen = want["scores"][..., 1:].max(axis=-1) > BOX_SCORE_FLOOR
        if seen.any():
            box_errors.append(np.abs(got["boxes"][seen] - want["boxes"][seen]).mean())
    return float(np.mean(score_errors) + (np.mean(box_errors) if box_errors else 0.0))


@dataclass(frozen=True)
class SensitivityResult:
    """What the pass measured and chose.

    baseline_error: the output error of the file with every candidate in INT8. ranking: ``(node, error with
    that node alone in float32)``, the most helpful first. keep_float: the nodes chosen. steps: per number
    of kept nodes tried, ``(count, output error, accept's score or None)``. trials: INT8 files made; seconds:
    the whole pass."""

    baseline_error: float
    ranking: Tuple[Tuple[str, float], ...]
    keep_float: Tuple[str, ...]
    steps: Tuple[Tuple[int, float, Optional[float]], ...]
    trials: int
    seconds: float

    def describe(self) -> str:
        """One line: what was kept in float32 and what the output error became."""
        if not self.keep_float:
            return (f"sensitivity pass ({self.trials} trial files, {self.seconds:.0f} s): no layer kept in float32 "
                    f"(output error {self.baseline_error:.4f})")
        final = next((step[1] for step in self.steps if step[0] == len(self.keep_float)), self.baseline_error)
        return (f"sensitivity pass ({self.trials} trial files, {self.seconds:.0f} s): kept {len(self.keep_float)} "
                f"layer(s) in float32 ({', '.join(self.keep_float)}); output error {self.baseline_error:.4f} -> "
                f"{final:.4f}")


class _Trials:
    """Writes trial INT8 files of one prepared model and measures them on the search images."""

    def __init__(self, prepared: PreparedModel, settings: Int8Settings, images: Sequence[np.ndarray], folder: str):
        self.prepared, self.settings, self.folder = prepared, settings, folder
        reference = OnnxPredictor(prepared.float_path)
        if reference.has_postprocess:
            raise ValueError(f"{prepared.float_path}: the sensitivity pass needs a plain export (scores and boxes), "
                             "not one with the postprocess graph")
        # One batch when the file's batch axis is free, else one image at a time.
        self.batches = ([reference.preprocess(list(images))] if reference.metadata.dynamic_batch
                        else [reference.preprocess([image]) for image in images])
        self.reference = [reference.forward(batch) for batch in self.batches]
        self.count = 0

    def write(self, keep_float: Sequence[str]) -> str:
        self.count += 1
        path = os.path.join(self.folder, f"trial-{self.count}.onnx")
        quantize_onnx(self.prepared.float_path, path, self.prepared.image_paths, prepared=self.prepared,
                      settings=replace(self.settings, keep_float=tuple(self.settings.keep_float) + tuple(keep_float)))
        return path

    def error(self, path: str) -> float:
        predictor = OnnxPredictor(path)
        return output_error(self.reference, [predictor.forward(batch) for batch in self.batches])


def rank_layers(prepared: PreparedModel, settings: Int8Settings, images: Sequence[np.ndarray], folder: str,
                candidates: Optional[Sequence[str]] = None) -> Tuple[float, List[Tuple[str, float]]]:
    """``(error of the file with every candidate in INT8, [(node, error with that node alone in float32), ...]
    sorted by that error)``. candidates: Conv node names (default: every convolution ``settings`` quantizes,
    :attr:`PreparedModel.conv_nodes`). ``images``: RGB uint8 search images; trial files go to ``folder``."""
    return _rank(_Trials(prepared, settings, images, folder), candidates)


def _rank(trials: _Trials, candidates: Optional[Sequence[str]],
          baseline: Optional[float] = None) -> Tuple[float, List[Tuple[str, float]]]:
    quantized = trials.prepared.quantized_nodes(trials.settings)
    names = [name for name in (candidates or trials.prepared.conv_nodes) if name in quantized]
    if baseline is None:
        baseline = trials.error(trials.write(()))
    ranking = sorted(((name, trials.error(trials.write((name,)))) for name in names), key=lambda item: item[1])
    return baseline, ranking


def find_float_layers(prepared: PreparedModel, settings: Int8Settings, images: Sequence[np.ndarray],
                      folder: Optional[str] = None, accept: Optional[Accept] = None,
                      max_float_layers: int = DEFAULT_MAX_FLOAT_LAYERS, significance: float = DEFAULT_SIGNIFICANCE,
                      candidates: Optional[Sequence[str]] = None, error_gate: float = 0.0,
                      report: Optional[Callable[[str], None]] = None) -> SensitivityResult:
    """The sensitivity pass (module docstring) on ``images`` (RGB uint8). accept: given an INT8 file's path
    (with its side files), ``(good enough, score)``; checked with no layer kept first, then with one more at
    a time. Without ``accept``, no ranking is made when the whole INT8 file's output error is below
    ``error_gate``. folder: where trial files go (default: ``prepared.work``). report: gets a line per step."""
    start = time.perf_counter()
    folder = folder or os.path.join(prepared.work, "sensitivity")
    os.makedirs(folder, exist_ok=True)
    trials = _Trials(prepared, settings, images, folder)
    steps: List[Tuple[int, float, Optional[float]]] = []
    keep: Tuple[str, ...] = ()
    all_int8 = trials.write(())
    baseline = trials.error(all_int8)
    if accept is not None:
        good, score = accept(all_int8)
        steps.append((0, baseline, score))
        if report:
            report(f"  every layer in INT8: output error {baseline:.4f}, score {score:.4f}")
        if good:  # nothing to keep: the ranking is not needed
            return SensitivityResult(baseline, (), (), tuple(steps), trials.count, time.perf_counter() - start)
    elif baseline < error_gate:
        if report:
            report(f"  every layer in INT8: output error {baseline:.4f}, below {error_gate}: no layer to look for")
        return SensitivityResult(baseline, (), (), (), trials.count, time.perf_counter() - start)
    baseline, ranking = _rank(trials, candidates, baseline)
    if accept is not None:
        for count in range(1, min(max_float_layers, len(ranking)) + 1):
            keep = tuple(name for name, _ in ranking[:count])
            path = trials.write(keep)
            good, score = accept(path)
            steps.append((count, trials.error(path), score))
            if report:
                report(f"  {count} in float32 (+{keep[-1]}): output error {steps[-1][1]:.4f}, score {score:.4f}")
            if good:
                break
        if not good:  # the target is out of reach within max_float_layers: the best file tried
            best_count = max(steps, key=lambda step: step[2])[0]
            keep = tuple(name for name, _ in ranking[:best_count])
    else:
        helpful = [name for name, error in ranking if baseline - error >= significance * baseline]
        keep = tuple(helpful[:max_float_layers])
        if keep:
            steps.append((len(keep), trials.error(trials.write(keep)), None))
    return SensitivityResult(baseline, tuple(ranking), keep, tuple(steps), trials.count,
                             time.perf_counter() - start)

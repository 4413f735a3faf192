"""Checks of an exported file against the PyTorch net it came from.

- :func:`check_onnxruntime`: ONNX Runtime's ``scores``/``boxes`` against PyTorch's on test images.
- :func:`check_opencv_dnn`: ``cv2.dnn.readNetFromONNX`` loads and runs the file, with the same comparison.
- :func:`check_postprocess`: a ``--with_postprocess`` graph gives the PyTorch predictor's detections.

Each returns a :class:`CheckResult` with a one-line message; none raises for a failed check.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch

from vision.export.metadata import ModelMetadata
from vision.export.onnx_predictor import OnnxPredictor
from vision.ssd.ssd import SSD
from vision.utils.opencv_log import quiet_opencv

TOLERANCE = 1e-4


@dataclass
class CheckResult:
    """``ok``: the check passed; ``message``: one line saying what was compared and what came out;
    ``max_abs_difference``: the largest elementwise difference found (None when nothing ran)."""

    name: str
    ok: bool
    message: str
    max_abs_difference: Optional[float] = None

    def __str__(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'}, {self.message}"


def sample_images(count: int = 2, seed: int = 0) -> List[np.ndarray]:
    """Reproducible RGB uint8 test pictures of different sizes: smooth noise with a few solid shapes, so
    the nets see edges and flat areas as in photographs."""
    generator = np.random.default_rng(seed)
    images = []
    for index in range(count):
        height, width = (240 + 60 * index, 320 - 40 * index)
        noise = generator.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
        image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        for _ in range(4):
            x1, y1 = int(generator.integers(0, width - 40)), int(generator.integers(0, height - 40))
            x2, y2 = x1 + int(generator.integers(30, width // 2)), y1 + int(generator.integers(30, height // 2))
            color = tuple(int(c) for c in generator.integers(0, 256, size=3))
            cv2.rectangle(image, (x1, y1), (x2, y2), color, cv2.FILLED)
        images.append(image)
    return images


def output_difference(actual: np.ndarray, expected: np.ndarray) -> tuple:
    """``(max abs difference, max difference relative to max(1, |expected|))``. The second is what the checks
    hold to the tolerance: for values within [-1, 1] (scores, boxes of a trained net) it is the absolute
    difference; boxes far outside the image (exp of large untrained offsets) carry float32 rounding
    noise in proportion to their size, which PyTorch itself shows against float64."""
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    scaled = difference / np.maximum(1.0, np.abs(expected.astype(np.float64)))
    return float(difference.max(initial=0.0)), float(scaled.max(initial=0.0))


@contextlib.contextmanager
def full_float32():
    """Run PyTorch's reference in full float32: on recent GPUs cuDNN otherwise may run convolutions in
    TF32 (about 1e-3 relative error), far above the checks' tolerance."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


@torch.no_grad()
def pytorch_outputs(net: SSD, batch: np.ndarray) -> tuple:
    """The net's ``(scores, boxes)`` on a preprocessed batch, as numpy; the net runs as if ``is_test=True``."""
    was_test, was_training = net.is_test, net.training
    net.is_test = True
    net.eval()
    try:
        with full_float32():
            scores, boxes = net(torch.from_numpy(batch).to(net.device))
    finally:
        net.is_test = was_test
        net.train(was_training)
    return scores.cpu().numpy(), boxes.cpu().numpy()


def _compare(name: str, outputs: Sequence[np.ndarray], expected: Sequence[np.ndarray], tolerance: float,
             where: str) -> CheckResult:
    (score_abs, score_scaled), (box_abs, box_scaled) = (output_difference(a, e) for a, e in zip(outputs, expected))
    worst_abs, worst_scaled = max(score_abs, box_abs), max(score_scaled, box_scaled)
    message = f"max abs difference {worst_abs:.1e} (scores {score_abs:.1e}, boxes {box_abs:.1e}) {where}"
    if worst_scaled < worst_abs:
        message += f"; {worst_scaled:.1e} relative to the largest boxes"
    message += f"; limit {tolerance:.0e}"
    return CheckResult(name, worst_scaled <= tolerance, message, worst_abs)


def check_onnxruntime(onnx_path: str, net: SSD, tolerance: float = TOLERANCE,
                      images: Optional[Sequence[np.ndarray]] = None) -> CheckResult:
    """ONNX Runtime against PyTorch on the preprocessed ``images`` (default: :func:`sample_images`), one at a
    time, and as one batch when the file's batch axis is free. For plain (no postprocess) exports."""
    predictor = OnnxPredictor(onnx_path)
    if predictor.has_postprocess:
        raise ValueError(f"{onnx_path}: has a postprocess graph; use check_postprocess")
    images = list(images) if images is not None else sample_images()
    batch = predictor.preprocess(images)
    expected_scores, expected_boxes = pytorch_outputs(net, batch)
    runs = [predictor.forward(batch[i:i + 1]) for i in range(len(images))]
    where = f"on {len(images)} test images"
    if predictor.metadata.dynamic_batch:
        runs.append(predictor.forward(batch))
        expected_scores = np.concatenate([expected_scores, expected_scores])
        expected_boxes = np.concatenate([expected_boxes, expected_boxes])
        where += ", singly and as one batch"
    scores = np.concatenate([run["scores"] for run in runs])
    boxes = np.concatenate([run["boxes"] for run in runs])
    return _compare("ONNX Runtime", [scores, boxes], [expected_scores, expected_boxes], tolerance, where)


def check_opencv_dnn(onnx_path: str, net: SSD, metadata: ModelMetadata, tolerance: float = TOLERANCE) -> CheckResult:
    """``cv2.dnn.readNetFromONNX`` loads the file and its ``scores``/``boxes`` on one test image match
    PyTorch's. A file OpenCV cannot read or run gives ``ok=False`` with OpenCV's reason."""
    image = sample_images(1)[0]
    resized = cv2.resize(image, metadata.input_size, interpolation=cv2.INTER_LINEAR)
    mean = np.asarray(metadata.image_mean, dtype=np.float32)
    batch = ((resized.astype(np.float32) - mean) / np.float32(metadata.image_std)).transpose(2, 0, 1)[None].copy()
    expected = pytorch_outputs(net, batch)
    try:
        with quiet_opencv(cv2.utils.logging.LOG_LEVEL_ERROR):  # its warnings repeat what the result line says
            dnn = cv2.dnn.readNetFromONNX(onnx_path)
            dnn.setInput(batch, metadata.input_name)
            outputs = dnn.forward(list(metadata.output_names))
    except cv2.error as error:
        reason = next((line.strip() for line in str(error).splitlines() if "error:" in line), str(error).strip())
        return CheckResult(f"OpenCV DNN {cv2.__version__}", False, f"cannot run the file ({reason[:200]})")
    outputs = [np.asarray(output) for output in outputs]
    if [output.size for output in outputs] != [reference.size for reference in expected]:
        shapes = ", ".join(f"{name} {tuple(output.shape)}" for name, output in zip(metadata.output_names, outputs))
        wanted = ", ".join(str(tuple(reference.shape)) for reference in expected)
        return CheckResult(f"OpenCV DNN {cv2.__version__}", False, f"runs the file but returns {shapes}, not {wanted}")
    outputs = [output.reshape(reference.shape) for output, reference in zip(outputs, expected)]
    return _compare(f"OpenCV DNN {cv2.__version__}", outputs, expected, tolerance, "on a test image")




def check_postprocess(onnx_path: str, net: SSD, net_type: str, images: Optional[Sequence[np.ndarray]] = None,
                      score_tolerance: float = TOLERANCE, box_tolerance: float = 1e-3) -> CheckResult:
    """A ``--with_postprocess`` graph in ONNX Runtime against the PyTorch predictor (hard NMS, the same
    candidate_size) on ``images``, at the default threshold and at 0.3 with top_k 5: the same labels in
    the same order, scores within ``score_tolerance`` and boxes within ``box_tolerance`` of the image size."""
    from vision.ssd.registry import create_predictor

    onnx_predictor = OnnxPredictor(onnx_path)
    if not onnx_predictor.has_postprocess:
        raise ValueError(f"{onnx_path}: has no postprocess graph; use check_onnxruntime")
    predictor = create_predictor(net_type, net, candidate_size=onnx_predictor.candidate_size)
    images = list(images) if images is not None else sample_images()
    was_test = net.is_test
    net.is_test = True
    counts, worst_score, worst_box = [], 0.0, 0.0
    try:
        for top_k, prob_threshold in ((-1, None), (5, 0.3)):
            with full_float32():
                expected_all = predictor.predict_batch(images, top_k=top_k, prob_threshold=prob_threshold)
            actual_all = onnx_predictor.predict_batch(images, top_k=top_k, prob_threshold=prob_threshold)
            for index, (image, expected, actual) in enumerate(zip(images, expected_all, actual_all)):
                expected_boxes, expected_labels, expected_probs = (t.numpy() for t in expected)
                boxes, labels, probs = actual
                counts.append(len(expected_labels))
                if labels.tolist() != expected_labels.tolist():
                    return CheckResult("ONNX Runtime postprocess", False,
                                       f"image {index} (top_k {top_k}): {len(labels)} detections, labels "
                                       f"{labels.tolist()[:8]}..., PyTorch {len(expected_labels)}, "
                                       f"{expected_labels.tolist()[:8]}...")
                scale = np.array([image.shape[1], image.shape[0]] * 2, dtype=np.float64)
                worst_score = max(worst_score, output_difference(probs, expected_probs)[0])
                worst_box = max(worst_box, output_difference(boxes / scale, expected_boxes / scale)[0])
    finally:
        net.is_test = was_test
    ok = worst_score <= score_tolerance and worst_box <= box_tolerance
    return CheckResult("ONNX Runtime postprocess", ok,
                       f"the PyTorch predictor's detections ({sum(counts)} in {len(images)} test images, 2 settings): "
                       f"same labels, scores within {worst_score:.1e}, boxes within {worst_box:.1e} of the image size "
                       f"(limits {score_tolerance:.0e}, {box_tolerance:.0e})", max(worst_score, worst_box))

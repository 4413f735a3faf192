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


def output_difference(actual: np.ndarray, expected: np.ndarray, boxes: bool = False) -> tuple:
    """``(max abs difference, max scaled difference)``; the second is what the checks hold to the tolerance.

    Scores (``boxes=False``): the difference relative to ``max(1, |expected|)``, i.e. the absolute one.
    Boxes ``(..., 4)`` (``boxes=True``): relative to ``m * max(1, ln m)``, ``m = max(1, |largest coordinate
    of the box|)``. A box is ``prior * exp(size_variance * raw)``: float32 rounding of the raw location,
    which grows with its magnitude ``ln(m / prior) / size_variance``, is multiplied by the box's size. So
    for boxes within the image (trained nets) this is the absolute difference, and the huge boxes of
    untrained weights (vgg16-ssd: 4e11) are held to what float32 can give, not judged by the weights."""
    actual64, expected64 = actual.astype(np.float64), expected.astype(np.float64)
    difference = np.abs(actual64 - expected64)
    if boxes and expected64.size:
        magnitude = np.maximum(1.0, np.abs(expected64).max(axis=-1, keepdims=True))
        scale = magnitude * np.maximum(1.0, np.log(magnitude))
    else:
        scale = np.maximum(1.0, np.abs(expected64))
    return float(difference.max(initial=0.0)), float((difference / scale).max(initial=0.0))


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


@contextlib.contextmanager
def evaluated_as(net: SSD, is_test: bool):
    """Run ``net`` in eval mode with ``is_test`` set and full float32 inside the block; both restored after."""
    was_test, was_training = net.is_test, net.training
    net.is_test = is_test
    net.eval()
    try:
        with full_float32():
            yield net
    finally:
        net.is_test = was_test
        net.train(was_training)


@torch.no_grad()
def pytorch_outputs(net: SSD, batch: np.ndarray) -> tuple:
    """The net's ``(scores, boxes)`` on a preprocessed batch, as numpy; the net runs as if ``is_test=True``."""
    with evaluated_as(net, is_test=True):
        scores, boxes = net(torch.from_numpy(batch).to(net.device))
    return scores.cpu().numpy(), boxes.cpu().numpy()


@torch.no_grad()
def logit_magnitudes(net: SSD, batch: np.ndarray) -> np.ndarray:
    """``max(1, max_c |logit|)`` per prior, ``(N, P, 1)``: what float32 rounding of the class logits scales
    with. A score is a softmax of logits, so its rounding grows with them (untrained vgg16-ssd: logits in
    the hundreds, scores saturated at 0 and 1)."""
    with evaluated_as(net, is_test=False):
        confidences, _ = net(torch.from_numpy(batch).to(net.device))
    return np.maximum(1.0, confidences.abs().amax(dim=2, keepdim=True).double().cpu().numpy())


def _compare(name: str, outputs: Sequence[np.ndarray], expected: Sequence[np.ndarray], tolerance: float,
             where: str, score_scale: Optional[np.ndarray] = None) -> CheckResult:
    """``outputs`` and ``expected``: ``[scores, boxes]``; ``score_scale``: :func:`logit_magnitudes` of the
    batch (None: scores compared absolutely)."""
    (score_abs, score_scaled), (box_abs, box_scaled) = (output_difference(a, e, boxes=index == 1)
                                                        for index, (a, e) in enumerate(zip(outputs, expected)))
    if score_scale is not None:
        score_scaled = float((np.abs(outputs[0].astype(np.float64) - expected[0].astype(np.float64))
                              / score_scale.reshape(expected[0].shape[:-1] + (1,))).max(initial=0.0))
    worst_abs, worst_scaled = max(score_abs, box_abs), max(score_scaled, box_scaled)
    message = f"max abs difference {worst_abs:.1e} (scores {score_abs:.1e}, boxes {box_abs:.1e}) {where}"
    if worst_scaled < worst_abs:
        message += f"; {worst_scaled:.1e} scaled by the logits' and boxes' magnitude"
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
    scale = logit_magnitudes(net, batch)
    scale = np.concatenate([scale] * (len(scores) // len(scale)))
    return _compare("ONNX Runtime", [scores, boxes], [expected_scores, expected_boxes], tolerance, where, scale)


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
    return _compare(f"OpenCV DNN {cv2.__version__}", outputs, expected, tolerance, "on a test image",
                    logit_magnitudes(net, batch))




def check_postprocess(onnx_path: str, net: SSD, net_type: str, images: Optional[Sequence[np.ndarray]] = None,
                      tolerance: float = TOLERANCE) -> CheckResult:
    """A ``--with_postprocess`` graph in ONNX Runtime, judged as a graph, on ``images`` at the default
    threshold and at 0.3 with top_k 5:

    1. its network part (the scores and boxes it feeds to the selection) against PyTorch, as
       :func:`check_onnxruntime` compares a plain export;
    2. its detections against :func:`vision.export.onnx_nms_reference.onnx_rule_detections` applied to
       those same scores and boxes: the same labels, boxes and scores, in the same order.

    The PyTorch predictor's detections are counted for the message only: its IoU adds the original's
    ``1e-5`` to the union, which ONNX's NonMaxSuppression cannot (see ``vision.export.postprocess``), so
    on small boxes the two may differ by design."""
    import onnx
    import onnxruntime

    from vision.export.metadata import BOXES_NAME, LABELS_NAME, MAX_PER_CLASS_INPUT, PROB_THRESHOLD_INPUT, SCORES_NAME
    from vision.export.onnx_nms_reference import onnx_rule_detections
    from vision.ssd.registry import create_predictor

    onnx_predictor = OnnxPredictor(onnx_path)
    if not onnx_predictor.has_postprocess:
        raise ValueError(f"{onnx_path}: has no postprocess graph; use check_onnxruntime")
    info = onnx_predictor.metadata.postprocess
    model = onnx.load(onnx_path)
    nms = next(node for node in model.graph.node if node.op_type == "NonMaxSuppression")
    selection = next(node for node in model.graph.node if node.name == "postprocess/class_scores")
    scores_name, boxes_name = selection.input[0], nms.input[0]
    model.graph.output.extend([onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                               for name in (scores_name, boxes_name)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    output_names = [output.name for output in session.get_outputs()]
    images = list(images) if images is not None else sample_images()
    batch = onnx_predictor.preprocess(images)
    expected_scores, expected_boxes = pytorch_outputs(net, batch)
    scale = logit_magnitudes(net, batch)
    predictor = create_predictor(net_type, net, candidate_size=info.candidate_size)
    name = "ONNX Runtime postprocess"
    total = pytorch_total = 0
    for top_k, prob_threshold in ((-1, info.default_prob_threshold), (5, 0.3)):
        max_per_class = top_k if top_k > 0 else info.candidate_size
        for index in range(len(images)):
            feed = {onnx_predictor.metadata.input_name: batch[index:index + 1],
                    PROB_THRESHOLD_INPUT: np.array([prob_threshold], dtype=np.float32),
                    MAX_PER_CLASS_INPUT: np.array([max_per_class], dtype=np.int64)}
            run = dict(zip(output_names, session.run(None, feed)))
            graph_scores, graph_boxes = run[scores_name], run[boxes_name]
            network = _compare(name, [graph_scores, graph_boxes], [expected_scores[index:index + 1],
                                                                    expected_boxes[index:index + 1]],
                               tolerance, f"on test image {index}", scale[index:index + 1])
            if not network.ok:
                return CheckResult(name, False, f"the scores and boxes the graph selects from differ from PyTorch: "
                                                f"{network.message}", network.max_abs_difference)
            (labels, priors), = onnx_rule_detections(torch.from_numpy(graph_scores), torch.from_numpy(graph_boxes),
                                                     info.candidate_size, prob_threshold, info.iou_threshold,
                                                     max_per_class)
            labels, priors = labels.numpy(), priors.numpy()
            same = (run[LABELS_NAME].tolist() == labels.tolist()
                    and np.array_equal(run[BOXES_NAME], np.clip(graph_boxes[0, priors], 0.0, 1.0))
                    and np.array_equal(run[SCORES_NAME], graph_scores[0, priors, labels]))
            if not same:
                return CheckResult(name, False, f"test image {index} (top_k {top_k}, prob_threshold {prob_threshold}): "
                                                f"the graph selects {len(run[LABELS_NAME])} detections, labels "
                                                f"{run[LABELS_NAME].tolist()[:8]}...; ONNX's rule on the same scores "
                                                f"and boxes selects {len(labels)}, {labels.tolist()[:8]}...")
            total += len(labels)
        with full_float32():
            pytorch_total += sum(len(found[1]) for found in predictor.predict_batch(images, top_k=top_k,
                                                                                    prob_threshold=prob_threshold))
    return CheckResult(name, True, f"network part within {tolerance:.0e} of PyTorch, and the detections of ONNX's "
                                   f"NonMaxSuppression rule ({total} in {len(images)} test images, 2 settings; the "
                                   f"PyTorch predictor, whose IoU adds 1e-5 to the union, finds {pytorch_total})")

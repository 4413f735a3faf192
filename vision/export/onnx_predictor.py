"""Running an exported SSD (``convert_to_caffe2_models.py``) with ONNX Runtime, without PyTorch.

Importing this module does not import torch: a deployment needs numpy, OpenCV and onnxruntime only.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import onnxruntime

from vision.export.metadata import (
    BATCH_INDEX_NAME,
    BOXES_NAME,
    LABELS_NAME,
    METADATA_KEY,
    SCORES_NAME,
    ModelMetadata,
    read_metadata,
)

Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]

DEFAULT_CANDIDATE_SIZE = 200
# ONNX Runtime's graph optimisation levels by name (``--onnx_optimization``).
OPTIMIZATION_LEVELS = {
    "disable": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# ONNX Runtime's own defaults ("all"; 0 threads: one per physical core). benchmarks/bench_deploy.py times
# the alternatives (docs/deploy.md#onnx-runtime-session-options).
DEFAULT_OPTIMIZATION = "all"
DEFAULT_NUM_THREADS = 0


class OnnxModelError(ValueError):
    """An ONNX file that is missing or that ONNX Runtime cannot load; the message names the file."""


class OnnxPredictor:
    """Detect objects in RGB uint8 images with an exported SSD, in ONNX Runtime.

    The interface and the results are those of the PyTorch ``Predictor`` (hard NMS):
    ``predict(image)`` returns ``(boxes, labels, probs)`` as numpy arrays: float32 ``(K, 4)`` corner boxes
    in the image's pixels (clipped to it), int64 ``(K,)`` class indexes (never 0, the background), float32 ``(K,)``
    scores; ordered by class, then score (best first). Per image and class: scores strictly above
    ``prob_threshold`` (``filter_threshold`` when None or 0), the ``candidate_size`` best, NMS at the
    net's IoU threshold (0.45), at most ``top_k`` kept (all when -1).

    Either kind of export runs: a plain one (outputs ``scores``/``boxes``; the selection above runs here
    in numpy) or a ``--with_postprocess`` one (the graph runs it; its ``candidate_size`` was fixed at
    export. The preprocessing, input size (``size``, ``(width, height)``, the one it was exported at) and
    class names come from the JSON beside the file.

    onnx_path: the ``.onnx`` file (float32 or INT8); providers: ONNX Runtime execution providers (default
    CPU); candidate_size: per-class candidates before NMS for plain exports (default 200, as the PyTorch
    predictor); num_threads: the session's intra-op threads (0: one per physical core, ONNX Runtime's
    default); optimization: graph optimisation level, one of OPTIMIZATION_LEVELS (default "all");
    session_options: a full ``SessionOptions`` instead (then num_threads and optimization are not used).
    """

    def __init__(self, onnx_path: str | os.PathLike, providers: Optional[Sequence] = None,
                 candidate_size: Optional[int] = None, filter_threshold: float = 0.01,
                 session_options: Optional[onnxruntime.SessionOptions] = None,
                 num_threads: int = DEFAULT_NUM_THREADS, optimization: str = DEFAULT_OPTIMIZATION):
        self.onnx_path = os.fspath(onnx_path)
        if session_options is None:
            session_options = make_session_options(num_threads, optimization)
        self.session = open_session(self.onnx_path, providers, session_options)
        embedded = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.metadata: ModelMetadata = read_metadata(self.onnx_path, embedded=embedded)
        self.class_names = list(self.metadata.class_names)
        self.size = self.metadata.input_size  # (width, height), as the PyTorch predictor's
        self.mean = np.asarray(self.metadata.image_mean, dtype=np.float32)
        self.std = np.float32(self.metadata.image_std)
        self.iou_threshold = float(self.metadata.iou_threshold)
        self.filter_threshold = filter_threshold
        self.has_postprocess = self.metadata.postprocess is not None
        if self.has_postprocess:
            fixed = self.metadata.postprocess.candidate_size
            if candidate_size is not None and candidate_size != fixed:
                raise ValueError(f"{self.onnx_path}: candidate_size was fixed at {fixed} when the graph was exported "
                                 f"with its postprocess; got {candidate_size}")
            self.candidate_size = fixed
        else:
            self.candidate_size = candidate_size or DEFAULT_CANDIDATE_SIZE
        self.input_name = self.metadata.input_name
        self.max_batch = None if self.metadata.dynamic_batch else 1

    # -- public API -------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, top_k: int = -1, prob_threshold: Optional[float] = None) -> Detections:
        """Detections in one RGB uint8 ``(H, W, 3)`` image; see the class docstring."""
        return self.predict_batch([image], top_k=top_k, prob_threshold=prob_threshold)[0]

    def predict_batch(self, images: Sequence[np.ndarray], top_k: int = -1,
                      prob_threshold: Optional[float] = None) -> List[Detections]:
        """``predict`` on each image (sizes may differ); one session run for a dynamic-batch export,
        one per image for a batch-1 export."""
        if len(images) == 0:
            return []
        threshold = prob_threshold if prob_threshold else self.filter_threshold
        sizes = [image.shape[:2] for image in images]
        batch = self.preprocess(images)
        step = self.max_batch or len(images)
        results: List[Detections] = []
        for start in range(0, len(images), step):
            chunk = batch[start:start + step]
            outputs = self.forward(chunk, top_k=top_k, prob_threshold=threshold)
            results.extend(self.postprocess(outputs, sizes[start:start + step], top_k=top_k, prob_threshold=threshold))
        return results

    # -- stages (public so benchmarks can time them) ----------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Resize each image to the net's size (``cv2.resize``, INTER_LINEAR, as the PyTorch predictor),
        then ``(x - mean) / std``. Returns float32 ``(N, 3, height, width)``."""
        width, height = self.size
        batch = np.empty((len(images), 3, height, width), dtype=np.float32)
        for index, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                described = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                             else type(image).__name__)
                raise ValueError(f"image {index}: expected an RGB uint8 array of shape (H, W, 3), got {described}")
            resized = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
            batch[index] = ((resized.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)
        return batch

    def forward(self, batch: np.ndarray, top_k: int = -1, prob_threshold: Optional[float] = None) -> dict:
        """One session run on a preprocessed batch; returns the graph's outputs by name. For a postprocess
        graph, ``top_k`` and ``prob_threshold`` are fed to its ``max_per_class``/``prob_threshold`` inputs."""
        feed = {self.input_name: batch}
        if self.has_postprocess:
            info = self.metadata.postprocess
            threshold = prob_threshold if prob_threshold else self.filter_threshold
            feed[info.prob_threshold_input] = np.array([threshold], dtype=np.float32)
            feed[info.max_per_class_input] = np.array([top_k if top_k > 0 else self.candidate_size], dtype=np.int64)
        names = [output.name for output in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed)))

    def postprocess(self, outputs: dict, sizes: Sequence[Tuple[int, int]], top_k: int = -1,
                    prob_threshold: Optional[float] = None) -> List[Detections]:
        """Detections per image from :meth:`forward`'s outputs; sizes: ``(height, width)`` of each original
        image. Boxes are clipped to 0..1 (the image) and scaled to pixels; :meth:`forward` of a plain export
        gives them raw."""
        threshold = prob_threshold if prob_threshold else self.filter_threshold
        results = []
        if self.has_postprocess:
            for index in range(len(sizes)):
                mine = outputs[BATCH_INDEX_NAME] == index
                boxes, labels, probs = outputs[BOXES_NAME][mine], outputs[LABELS_NAME][mine], outputs[SCORES_NAME][mine]
                # ONNX does not promise an order; the predictor's is class, then score.
                order = np.lexsort((-probs, labels))
                results.append((boxes[order], labels[order].astype(np.int64), probs[order]))
        else:
            for scores, boxes in zip(outputs[SCORES_NAME], outputs[BOXES_NAME]):
                results.append(select_detections(scores, boxes, threshold, self.candidate_size, self.iou_threshold,
                                                 top_k))
        scaled = []
        for (boxes, labels, probs), (height, width) in zip(results, sizes):
            scale = np.array([width, height, width, height], dtype=np.float32)
            # Clipped to the image, as the PyTorch predictor's (a postprocess graph has clipped them already).
            clipped = np.clip(boxes.astype(np.float32), 0.0, 1.0)
            scaled.append((clipped * scale, labels.astype(np.int64), probs.astype(np.float32)))
        return scaled


def make_session_options(num_threads: int = DEFAULT_NUM_THREADS,
                         optimization: str = DEFAULT_OPTIMIZATION) -> onnxruntime.SessionOptions:
    """Session options with ``num_threads`` intra-op threads (0: ONNX Runtime's choice, one per physical
    core) and the named graph optimisation level; errors only in the log. ValueError for a bad value."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization level must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
    if num_threads < 0:
        raise ValueError(f"num_threads must be 0 (automatic) or more, got {num_threads}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(num_threads)
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    # Errors only: a postprocess graph's optional inputs (initializers listed as inputs, by design)
    # would otherwise print a warning on every load.
    options.log_severity_level = 3
    return options


def open_session(onnx_path: str, providers: Optional[Sequence] = None,
                 session_options: Optional[onnxruntime.SessionOptions] = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session (CPU unless ``providers`` says otherwise); OnnxModelError naming the file
    when it is missing or cannot be loaded."""
    if not os.path.isfile(onnx_path):
        raise OnnxModelError(f"{onnx_path}: no such ONNX file")
    if session_options is None:
        session_options = make_session_options()
    try:
        return onnxruntime.InferenceSession(onnx_path, sess_options=session_options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as error:  # onnxruntime raises its own pybind error types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OnnxModelError(f"{onnx_path}: ONNX Runtime cannot load it ({reason[:200]})") from None


def select_detections(scores: np.ndarray, boxes: np.ndarray, prob_threshold: float, candidate_size: int,
                      iou_threshold: float, top_k: int = -1) -> Detections:
    """The predictor's per-class selection for one image, in numpy.

    scores ``(P, C)`` softmaxed, boxes ``(P, 4)`` corner form. For each class but 0: scores strictly above
    ``prob_threshold``, the ``candidate_size`` best, greedy NMS dropping IoU > ``iou_threshold``, at most
    ``top_k`` (all when <= 0). Returns ``(boxes (K, 4) as given, labels (K,) int64, probs (K,) float32)``
    ordered by class, then score.
    """
    kept_boxes, kept_labels, kept_probs = [], [], []
    for label in range(1, scores.shape[1]):
        class_scores = scores[:, label]
        candidates = np.flatnonzero(class_scores > prob_threshold)
        if candidates.size == 0:
            continue
        if candidates.size > candidate_size:
            candidates = candidates[np.argpartition(-class_scores[candidates], candidate_size - 1)[:candidate_size]]
        candidates = candidates[np.argsort(-class_scores[candidates], kind="stable")]
        keep = greedy_nms(boxes[candidates], iou_threshold, top_k)
        chosen = candidates[keep]
        kept_boxes.append(boxes[chosen])
        kept_labels.append(np.full(chosen.size, label, dtype=np.int64))
        kept_probs.append(class_scores[chosen])
    if not kept_labels:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), np.float32)
    return np.concatenate(kept_boxes), np.concatenate(kept_labels), np.concatenate(kept_probs).astype(np.float32)


def greedy_nms(boxes: np.ndarray, iou_threshold: float, top_k: int = -1) -> np.ndarray:
    """Indexes of the boxes kept by greedy NMS. boxes ``(K, 4)`` corner form, sorted best first; a box is
    dropped when its IoU with a kept one is above ``iou_threshold``. At most ``top_k`` (all when <= 0)."""
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float32) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    # The whole IoU matrix at once (K is at most candidate_size), then one cheap pass in score order.
    inter_w = np.clip(np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]), 0, None)
    inter_h = np.clip(np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]), 0, None)
    inter = inter_w * inter_h
    with np.errstate(divide="ignore", invalid="ignore"):
        overlapping = inter / (areas[:, None] + areas[None, :] - inter) > iou_threshold
    alive = np.ones(len(boxes), dtype=bool)
    keep = []
    for index in range(len(boxes)):
        if not alive[index]:
            continue
        keep.append(index)
        if 0 < top_k <= len(keep):
            break
        alive &= ~overlapping[index]
    return np.asarray(keep, dtype=np.int64)

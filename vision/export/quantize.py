"""INT8 quantization of an exported SSD with ONNX Runtime's static quantization, calibrated on the user's images.

    images = choose_calibration_images("data/VOC2007", 200)
    quantize_onnx("models/mb1-ssd.onnx", "models/mb1-ssd.int8.onnx", images)   # + .int8.json, .int8.labels.txt

What is quantized: QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into
integer kernels), weights int8 per output channel, activations uint8 (asymmetric), calibrated on the images.
uint8 activations with int8 weights (U8S8) because ONNX Runtime's CPU kernels take it everywhere: with int8
activations (S8S8) on a CPU without AVX-512 VNNI it leaves convolutions in float32 and runs slower
(docs/benchmarks.md).
Only the network part is quantized: the convolutions and everything that feeds one, except, by default,
the heads' last convolutions (the class logits and box offsets), which run in float32 on the dequantized
features: 8-bit logits and offsets cost much mAP (docs/benchmarks.md). What follows the last convolutions
(the softmax, the box decoding against the priors and, in a ``--with_postprocess`` graph, the selection
and NMS) stays float32, so scores and box corners keep their precision.

Calibration feeds each image through exactly the predictor's preprocessing (``OnnxPredictor.preprocess``:
cv2 INTER_LINEAR resize to the model's input size read from its metadata, ``(x - mean) / std``, RGB).
Memory stays bounded: the images are streamed from disk in chunks (ONNX Runtime's
``CalibStridedMinMax``), and only one chunk's intermediate outputs are held at a time. MinMax folds each
chunk into running ranges; the histogram methods (entropy, percentile), which keep every intermediate
output of a chunk, fold each chunk into running
histograms, with chunks of at most ``HISTOGRAM_CHUNK_IMAGES`` images.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np
import onnx

from vision.export.files import save_model_files
from vision.export.metadata import METADATA_KEY, ModelMetadata
from vision.export.onnx_predictor import OnnxPredictor
from vision.utils.opencv_log import quiet_opencv

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# MinMax: on trained nets the histogram methods were no better for several times the calibration time
# (benchmarks/bench_deploy.py --methods, docs/benchmarks.md), and it needs constant memory.
DEFAULT_CALIBRATION_METHOD = "minmax"
DEFAULT_CALIBRATION_IMAGES = 200
HEAD_PRECISIONS = ("float", "int8")
# The heads' last convolutions in float32: in INT8 they cost far more mAP (benchmarks/bench_deploy.py,
# docs/benchmarks.md).
DEFAULT_HEADS = "float"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MINMAX_CHUNK_IMAGES = 32
HISTOGRAM_CHUNK_IMAGES = 8


class CalibrationWarning(UserWarning):
    """The calibration folder holds fewer readable images than were asked for."""


def int8_output_path(onnx_path: str | os.PathLike) -> str:
    """``models/mb1-ssd.onnx`` -> ``models/mb1-ssd.int8.onnx`` (its side files: ``.int8.json``,
    ``.int8.labels.txt``)."""
    stem, extension = os.path.splitext(os.fspath(onnx_path))
    return f"{stem if extension.lower() == '.onnx' else os.fspath(onnx_path)}.int8.onnx"


def find_image_files(folder: str | os.PathLike) -> List[str]:
    """Every image file (by extension) under ``folder``, recursively, sorted: a plain folder of images, or
    any data set root the toolkit reads (VOC ``JPEGImages/``, Open Images ``train/``, COCO, YOLO, CSV)."""
    found = []
    for directory, subdirectories, names in os.walk(os.fspath(folder)):
        subdirectories.sort()
        found += [os.path.join(directory, name) for name in names if name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def choose_calibration_images(folder: str | os.PathLike, count: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0,
                              warn: Optional[Callable[[str], None]] = None) -> List[str]:
    """``count`` readable images drawn at random (reproducibly, by ``seed``) from ``folder`` (see
    :func:`find_image_files`). Unreadable files are passed over. ValueError naming the folder when it
    holds no readable image; with fewer than ``count``, ``warn(message)`` (default: a CalibrationWarning)
    and all of them."""
    folder = os.fspath(folder)
    if count < 1:
        raise ValueError(f"--calibration_images must be at least 1, got {count}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such calibration folder")
    candidates = find_image_files(folder)
    order = np.random.default_rng(seed).permutation(len(candidates))
    chosen = []
    with quiet_opencv():
        for index in order:
            if len(chosen) == count:
                break
            if cv2.imread(candidates[index], cv2.IMREAD_COLOR) is not None:
                chosen.append(candidates[index])
    if not chosen:
        found = (f"{len(candidates)} image files, none readable" if candidates
                 else f"no {'/'.join(IMAGE_EXTENSIONS)} files")
        raise ValueError(f"{folder}: no readable images to calibrate on ({found})")
    if len(chosen) < count:
        message = (f"{folder}: {len(chosen)} readable images, fewer than the {count} requested; "
                   f"calibrating on {len(chosen)}")
        if warn is None:
            warnings.warn(message, CalibrationWarning, stacklevel=2)
        else:
            warn(message)
    return chosen


def read_rgb(path: str) -> np.ndarray:
    """An image file as RGB uint8 ``(H, W, 3)``; ValueError naming the file when it cannot be decoded."""
    with quiet_opencv():
        image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


try:
    from onnxruntime.quantization import CalibrationDataReader as _ReaderBase
except ImportError:  # pragma: no cover - onnxruntime always ships it; kept importable for the docs
    _ReaderBase = object


class ImageCalibrationReader(_ReaderBase):
    """Feeds ONNX Runtime's calibrator one preprocessed image at a time, decoded from disk when asked for.

    ``preprocess``: list of RGB uint8 images -> float32 ``(N, 3, H, W)`` (the predictor's own).
    ``set_range``/``__len__`` let ``quantize_static`` (``CalibStridedMinMax``) collect in chunks.
    """

    def __init__(self, image_paths: Sequence[str], input_name: str,
                 preprocess: Callable[[List[np.ndarray]], np.ndarray]):
        self.image_paths = list(image_paths)
        self.input_name = input_name
        self.preprocess = preprocess
        self.set_range(0, len(self.image_paths))

    def __len__(self) -> int:
        return len(self.image_paths)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.end = start_index, min(end_index, len(self.image_paths))

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.position >= self.end:
            return None
        image = read_rgb(self.image_paths[self.position])
        self.position += 1
        return {self.input_name: self.preprocess([image])}

    def rewind(self) -> None:
        self.set_range(0, len(self.image_paths))


def network_node_names(model: onnx.ModelProto) -> Set[str]:
    """Names of the nodes to quantize: every ``Conv`` and every node whose output reaches a ``Conv``.
    Nodes after the last convolutions (softmax, box decoding, a postprocess graph) are left out."""
    producers = {output: node for node in model.graph.node for output in node.output}
    selected: Set[str] = set()
    pending = [node for node in model.graph.node if node.op_type == "Conv"]
    while pending:
        node = pending.pop()
        if node.name in selected:
            continue
        selected.add(node.name)
        pending += [producers[name] for name in node.input if name in producers]
    return selected


def head_node_names(model: onnx.ModelProto) -> Set[str]:
    """Names of the heads' last convolutions: every ``Conv`` whose output reaches no other ``Conv`` (the
    layers that write the class logits and the box offsets)."""
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    feeds_a_conv: Dict[str, bool] = {}
    for node in reversed(model.graph.node):  # ONNX lists nodes in topological order: consumers come later
        feeds_a_conv[node.name] = any(consumer.op_type == "Conv" or feeds_a_conv.get(consumer.name, False)
                                      for output in node.output for consumer in consumers.get(output, []))
    return {node.name for node in model.graph.node if node.op_type == "Conv" and not feeds_a_conv[node.name]}


def chunk_size(num_images: int, largest: int) -> int:
    """The largest divisor of ``num_images`` not above ``largest`` (``CalibStridedMinMax`` needs one)."""
    return max(size for size in range(1, min(largest, num_images) + 1) if num_images % size == 0)


def quantize_onnx(float_path: str | os.PathLike, output_path: str | os.PathLike, image_paths: Sequence[str],
                  method: str = DEFAULT_CALIBRATION_METHOD, per_channel: bool = True,
                  activations: str = "uint8", heads: str = DEFAULT_HEADS,
                  side_paths: Optional[Tuple[str, str]] = None) -> ModelMetadata:
    """Write the INT8 model ``output_path`` (with its ``.json`` and ``.labels.txt``) from the float32 export
    ``float_path`` (plain or ``--with_postprocess``), calibrated on ``image_paths`` (see the module
    docstring). Returns its metadata: the float model's, plus ``quantization``. The files are written to
    temporary names and renamed, so a failure leaves none. activations: ``"uint8"`` (U8S8, the default)
    or ``"int8"`` (S8S8). heads: ``"float"`` keeps the heads' last convolutions (``head_node_names``) in
    float32, on the dequantized features; ``"int8"`` quantizes them too. side_paths: ``(json_path,
    labels_path)`` instead of the names beside ``output_path`` (for a caller that stages the files itself)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if activations not in ("uint8", "int8"):
        raise ValueError(f"activations must be uint8 or int8, got {activations!r}")
    if heads not in HEAD_PRECISIONS:
        raise ValueError(f"heads must be one of {', '.join(HEAD_PRECISIONS)}, got {heads!r}")
    if not image_paths:
        raise ValueError("no calibration images")
    float_path, output_path = os.fspath(float_path), os.fspath(output_path)
    predictor = OnnxPredictor(float_path)
    metadata = predictor.metadata
    calibration_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                          "percentile": CalibrationMethod.Percentile}[method]
    largest_chunk = MINMAX_CHUNK_IMAGES if method == "minmax" else HISTOGRAM_CHUNK_IMAGES
    with tempfile.TemporaryDirectory(prefix="ssd-int8-") as work:
        model = onnx.load(float_path)
        for index, node in enumerate(model.graph.node):  # the quantizer selects nodes by name
            node.name = node.name or f"node_{index}_{node.op_type}"
        named_path, prepared_path = os.path.join(work, "named.onnx"), os.path.join(work, "prepared.onnx")
        onnx.save_model(model, named_path)
        # Shape inference and ONNX Runtime's basic graph optimisations, as ORT advises before quantizing.
        quant_pre_process(named_path, prepared_path, skip_symbolic_shape=True)
        prepared = onnx.load(prepared_path)
        nodes = network_node_names(prepared)
        if heads == "float":
            nodes -= head_node_names(prepared)
        op_types = sorted({node.op_type for node in prepared.graph.node if node.name in nodes})
        reader = ImageCalibrationReader(image_paths, predictor.input_name, predictor.preprocess)
        quantized_path = os.path.join(work, "quantized.onnx")
        # ORT prints progress ("Collecting tensor data ...") on stdout and warns about optional inputs.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(prepared_path, quantized_path, reader, quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                            calibrate_method=calibration_method, op_types_to_quantize=op_types,
                            nodes_to_quantize=sorted(nodes),
                            extra_options={"CalibStridedMinMax": chunk_size(len(image_paths), largest_chunk)})
        quantized = onnx.load(quantized_path)

    quantized_metadata = replace(metadata, quantization={
        "format": "QDQ", "weights": "int8, per channel" if per_channel else "int8, per tensor",
        "activations": f"{activations}, asymmetric", "calibration_method": method,
        "calibration_images": len(image_paths),
        "calibration_input_size": _width_height(predictor.size), "quantized_nodes": len(nodes),
        "heads": "float32" if heads == "float" else "int8",
    })
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, {METADATA_KEY: quantized_metadata.to_json()})
    quantized.producer_name = "pytorch-ssd-toolkit"
    save_model_files(quantized, quantized_metadata, output_path, side_paths)
    return quantized_metadata


def _width_height(size) -> List[int]:
    """``[width, height]`` of a predictor's input size (an int for a square, or a ``(width, height)`` pair)."""
    return [int(size), int(size)] if np.ndim(size) == 0 else [int(value) for value in size]

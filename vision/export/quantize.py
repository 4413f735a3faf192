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
from dataclasses import dataclass, replace
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
# 8-bit weights: reduce_range (7 bits) made no measurable difference in mAP or speed on this project's CPUs
# (benchmarks/bench_deploy.py options/accuracy, docs/benchmarks.md).
DEFAULT_REDUCE_RANGE = False
# The sensitivity pass: None runs it (vision.export.sensitivity), 0 skips it.
DEFAULT_FLOAT_LAYERS: Optional[int] = None
DEFAULT_MAP_TOLERANCE = 0.01
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


QUANT_FORMATS = ("qdq", "qoperator")
WEIGHT_TYPES = ("int8", "uint8")
ACTIVATION_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class Int8Settings:
    """How an INT8 file is made (every field has the measured default; docs/benchmarks.md).

    method: calibration (``minmax``, ``entropy``, ``percentile``). per_channel: weights per output channel
    (else per tensor). activations / weights: ``uint8`` or ``int8`` (U8S8 is uint8 activations, int8 weights).
    reduce_range: weights in 7 bits, so that a CPU without VNNI (whose 8-bit multiply-adds sum pairs into
    saturating 16-bit values) computes them exactly. quant_format: ``qdq`` (QuantizeLinear/DequantizeLinear
    pairs that ONNX Runtime fuses into integer kernels) or ``qoperator`` (QLinearConv and friends in the
    file). heads: ``float`` keeps the heads' last convolutions in float32 (:func:`head_node_names`).
    float_depthwise: keep the depthwise convolutions in float32. keep_float: more node names to keep in
    float32 (what :mod:`vision.export.sensitivity` chose).
    """

    method: str = DEFAULT_CALIBRATION_METHOD
    per_channel: bool = True
    activations: str = "uint8"
    weights: str = "int8"
    reduce_range: bool = DEFAULT_REDUCE_RANGE
    quant_format: str = "qdq"
    heads: str = DEFAULT_HEADS
    float_depthwise: bool = False
    keep_float: Tuple[str, ...] = ()

    def check(self) -> "Int8Settings":
        """``self``; a ValueError naming the first field with a value outside its choices."""
        for name, value, choices in (("calibration method", self.method, CALIBRATION_METHODS),
                                     ("activations", self.activations, ACTIVATION_TYPES),
                                     ("weights", self.weights, WEIGHT_TYPES),
                                     ("quant_format", self.quant_format, QUANT_FORMATS),
                                     ("heads", self.heads, HEAD_PRECISIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return self

    def describe(self) -> Dict[str, object]:
        """The ``quantization`` entries of the INT8 file's metadata that say how it was made."""
        bits = "7-bit (reduce_range)" if self.reduce_range else "8-bit"
        return {"format": self.quant_format.upper() if self.quant_format == "qdq" else "QOperator",
                "weights": f"{self.weights}, {bits}, {'per channel' if self.per_channel else 'per tensor'}",
                "activations": f"{self.activations}, asymmetric", "calibration_method": self.method,
                "heads": "float32" if self.heads == "float" else "int8",
                "depthwise": "float32" if self.float_depthwise else "int8",
                "float_nodes": sorted(self.keep_float)}


def depthwise_node_names(model: onnx.ModelProto) -> Set[str]:
    """Names of the depthwise convolutions: ``Conv`` nodes with ``group`` > 1 and one input channel per group."""
    weights = {initializer.name: initializer.dims for initializer in model.graph.initializer}
    names = set()
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
        dims = weights.get(node.input[1])
        if group > 1 and dims is not None and len(dims) == 4 and dims[1] == 1:
            names.add(node.name)
    return names


def protect_float_convolutions(model: onnx.ModelProto, names: Set[str]) -> int:
    """Keep the named convolutions in float32 when ONNX Runtime loads ``model``; returns how many needed it.

    ONNX Runtime (1.20 and newer) quantizes on load the float32 weights of every ``Conv`` whose input comes
    from a ``DequantizeLinear`` with one scale (its ``WeightBiasQuantization`` optimizer, per-tensor INT8),
    which would undo keeping a layer in float32 and ruins a layer with one large weight. Such a convolution
    reads its input through a ``DequantizeLinear`` of its own with the same scale per channel (``axis`` 1),
    which computes the same values and which that optimizer leaves alone."""
    from onnx import numpy_helper

    producers = {output: node for node in model.graph.node for output in node.output}
    initializers = {initializer.name: initializer for initializer in model.graph.initializer}
    changed = 0
    for node in list(model.graph.node):
        if node.op_type != "Conv" or node.name not in names or node.input[1] not in initializers:
            continue
        dequantize = producers.get(node.input[0])
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(dequantize.input) < 2:
            continue
        if dequantize.input[1] not in initializers:
            continue
        scale = numpy_helper.to_array(initializers[dequantize.input[1]])
        if scale.size != 1:
            continue
        weight_dims = initializers[node.input[1]].dims
        group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
        channels = int(weight_dims[1]) * int(group)
        prefix = f"{node.name}_float_input"
        scales = numpy_helper.from_array(np.full(channels, scale.reshape(()), dtype=scale.dtype), f"{prefix}_scale")
        inputs = [dequantize.input[0], scales.name]
        model.graph.initializer.append(scales)
        if len(dequantize.input) > 2 and dequantize.input[2] in initializers:
            zero_point = numpy_helper.to_array(initializers[dequantize.input[2]])
            zero_points = numpy_helper.from_array(np.full(channels, zero_point.reshape(()), dtype=zero_point.dtype),
                                                  f"{prefix}_zero_point")
            model.graph.initializer.append(zero_points)
            inputs.append(zero_points.name)
        own = onnx.helper.make_node("DequantizeLinear", inputs, [f"{prefix}_output"], name=f"{prefix}_DequantizeLinear",
                                    axis=1)
        model.graph.node.insert(list(model.graph.node).index(node), own)
        node.input[0] = own.output[0]
        changed += 1
    _remove_unused_nodes(model)
    return changed


def _remove_unused_nodes(model: onnx.ModelProto) -> None:
    """Drop nodes none of whose outputs is read (the DequantizeLinear nodes the convolutions above left)."""
    while True:
        read = {name for node in model.graph.node for name in node.input}
        read |= {output.name for output in model.graph.output}
        unused = [node for node in model.graph.node if not any(output in read for output in node.output)]
        if not unused:
            return
        for node in unused:
            model.graph.node.remove(node)


class PreparedModel:
    """A float32 export made ready for quantization once (nodes named, ONNX Runtime's pre-processing:
    shape inference and basic graph optimisations, as ORT advises) in ``work``; each calibration method's
    activation ranges are collected once, on ``image_paths``, and cached there, so that :meth:`quantize`
    writes an INT8 variant in seconds (the sensitivity pass writes dozens).

    ``network_nodes``: what may be quantized (:func:`network_node_names`); ``head_nodes``, ``depthwise_nodes``:
    subsets of it; ``conv_nodes``: its convolutions, in graph order."""

    def __init__(self, float_path: str | os.PathLike, image_paths: Sequence[str], work: str | os.PathLike):
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if not image_paths:
            raise ValueError("no calibration images")
        self.float_path, self.work = os.fspath(float_path), os.fspath(work)
        os.makedirs(self.work, exist_ok=True)
        self.image_paths = list(image_paths)
        self.predictor = OnnxPredictor(self.float_path)
        model = onnx.load(self.float_path)
        for index, node in enumerate(model.graph.node):  # the quantizer selects nodes by name
            node.name = node.name or f"node_{index}_{node.op_type}"
        named_path = os.path.join(self.work, "named.onnx")
        self.prepared_path = os.path.join(self.work, "prepared.onnx")
        onnx.save_model(model, named_path)
        quant_pre_process(named_path, self.prepared_path, skip_symbolic_shape=True)
        prepared = onnx.load(self.prepared_path)
        self.network_nodes = network_node_names(prepared)
        self.head_nodes = head_node_names(prepared)
        self.depthwise_nodes = depthwise_node_names(prepared) & self.network_nodes
        self.conv_nodes = [node.name for node in prepared.graph.node
                           if node.op_type == "Conv" and node.name in self.network_nodes]
        self.op_types = sorted({node.op_type for node in prepared.graph.node if node.name in self.network_nodes})

    def quantized_nodes(self, settings: Int8Settings) -> Set[str]:
        """The nodes ``settings`` quantizes: the network's, less the heads, depthwise and kept ones it asks."""
        nodes = set(self.network_nodes)
        if settings.heads == "float":
            nodes -= self.head_nodes
        if settings.float_depthwise:
            nodes -= self.depthwise_nodes
        return nodes - set(settings.keep_float)

    def quantize(self, output_path: str | os.PathLike, settings: Int8Settings) -> Set[str]:
        """Write the INT8 model (no side files, no metadata) to ``output_path``; returns the quantized nodes."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        settings.check()
        nodes = self.quantized_nodes(settings)
        cache = os.path.join(self.work, f"ranges-{settings.method}.json")
        reader = None
        if not os.path.isfile(cache):
            reader = ImageCalibrationReader(self.image_paths, self.predictor.input_name, self.predictor.preprocess)
        largest_chunk = MINMAX_CHUNK_IMAGES if settings.method == "minmax" else HISTOGRAM_CHUNK_IMAGES
        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        # ORT prints progress ("Collecting tensor data ...") on stdout and warns about optional inputs.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(self.prepared_path, os.fspath(output_path), reader,
                            quant_format=QuantFormat.QDQ if settings.quant_format == "qdq" else QuantFormat.QOperator,
                            per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                            weight_type=types[settings.weights], activation_type=types[settings.activations],
                            calibrate_method={"minmax": CalibrationMethod.MinMax,
                                              "entropy": CalibrationMethod.Entropy,
                                              "percentile": CalibrationMethod.Percentile}[settings.method],
                            op_types_to_quantize=self.op_types, nodes_to_quantize=sorted(nodes),
                            calibration_cache_path=cache,
                            extra_options={"CalibStridedMinMax": chunk_size(len(self.image_paths), largest_chunk)})
        model = onnx.load(os.fspath(output_path))
        if protect_float_convolutions(model, set(self.conv_nodes) - nodes):
            onnx.save_model(model, os.fspath(output_path))
        return nodes


def quantize_onnx(float_path: str | os.PathLike, output_path: str | os.PathLike, image_paths: Sequence[str],
                  method: str = DEFAULT_CALIBRATION_METHOD, per_channel: bool = True,
                  activations: str = "uint8", heads: str = DEFAULT_HEADS,
                  side_paths: Optional[Tuple[str, str]] = None, settings: Optional[Int8Settings] = None,
                  prepared: Optional[PreparedModel] = None) -> ModelMetadata:
    """Write the INT8 model ``output_path`` (with its ``.json`` and ``.labels.txt``) from the float32 export
    ``float_path`` (plain or ``--with_postprocess``), calibrated on ``image_paths`` (see the module
    docstring). Returns its metadata: the float model's, plus ``quantization``. The files are written to
    temporary names and renamed, so a failure leaves none.

    settings: every option (:class:`Int8Settings`); without it, ``method``, ``per_channel``, ``activations``
    (``"uint8"``: U8S8, the default, or ``"int8"``: S8S8) and ``heads`` (``"float"`` keeps the heads' last
    convolutions, :func:`head_node_names`, in float32 on the dequantized features; ``"int8"`` quantizes them
    too) with the other fields' defaults. prepared: a :class:`PreparedModel` of ``float_path`` on
    ``image_paths`` to reuse (its ranges are cached). side_paths: ``(json_path, labels_path)`` instead of
    the names beside ``output_path`` (for a caller that stages the files itself)."""
    if settings is None:
        settings = Int8Settings(method=method, per_channel=per_channel, activations=activations, heads=heads)
    settings.check()
    if not image_paths:
        raise ValueError("no calibration images")
    float_path, output_path = os.fspath(float_path), os.fspath(output_path)
    with tempfile.TemporaryDirectory(prefix="ssd-int8-") as work:
        model_files = prepared or PreparedModel(float_path, image_paths, work)
        quantized_path = os.path.join(work, "quantized.onnx")
        nodes = model_files.quantize(quantized_path, settings)
        quantized = onnx.load(quantized_path)
        predictor = model_files.predictor

    quantized_metadata = replace(predictor.metadata, quantization={
        **settings.describe(), "calibration_images": len(image_paths),
        "calibration_input_size": _width_height(predictor.size), "quantized_nodes": len(nodes)})
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, {METADATA_KEY: quantized_metadata.to_json()})
    quantized.producer_name = "pytorch-ssd-toolkit"
    save_model_files(quantized, quantized_metadata, output_path, side_paths)
    return quantized_metadata


def _width_height(size) -> List[int]:
    """``[width, height]`` of a predictor's input size (an int for a square, or a ``(width, height)`` pair)."""
    return [int(size), int(size)] if np.ndim(size) == 0 else [int(value) for value in size]

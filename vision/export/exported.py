"""Opening an exported model for use: any file ``convert_to_caffe2_models.py`` writes (float32 or INT8, with
or without the NMS graph) as an :class:`~vision.export.onnx_predictor.OnnxPredictor` on a device, checked
against the net type, classes and input size it is run with.

``vision.runtime.load_detector(..., backend="onnx")`` and ``eval_ssd.py --backend onnx`` both open files
here. No torch import.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import onnxruntime

from vision.export.metadata import side_file_paths
from vision.export.onnx_predictor import DEFAULT_NUM_THREADS, DEFAULT_OPTIMIZATION, OnnxPredictor
from vision.utils.image_size import format_size, parse_resolution


def onnx_providers(device: Optional[str]) -> Tuple[list, str]:
    """``(providers, device name)``: ONNX Runtime execution providers for a ``--device`` value: ``cpu``;
    ``cuda`` / ``cuda:N`` (ValueError when this onnxruntime has no CUDA provider); None: CUDA when
    available, else CPU. The name is ``"cpu"`` or ``"cuda:N"``."""
    available = onnxruntime.get_available_providers()
    if device is None:
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(f"--device {device}: this onnxruntime has no CUDA provider "
                             f"(it has {', '.join(available)})")
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"
    raise ValueError(f"--device {device}: the onnx backend runs on cpu or cuda[:N]")


def open_exported_model(model_path: str | os.PathLike, class_names: Sequence[str], net_type: Optional[str] = None,
                        device: Optional[str] = None, num_threads: int = DEFAULT_NUM_THREADS,
                        optimization: str = DEFAULT_OPTIMIZATION, candidate_size: Optional[int] = None,
                        resolution: Optional[str] = None, label_path: Optional[str] = None) -> OnnxPredictor:
    """An ``OnnxPredictor`` for ``model_path`` on ``device`` (see :func:`onnx_providers`), its session with
    ``num_threads`` intra-op threads (0: one per physical core) and the named graph ``optimization`` level.

    class_names: the classes it is run with, BACKGROUND first. candidate_size: boxes per class before NMS
    (None: 200, or what a postprocess graph was exported with). Raises ValueError with one line naming the
    file when, in this order: ``resolution`` (``"N"`` or ``"WxH"``, None: any) is not the size it was
    exported at; it was exported from another net type than ``net_type`` (None: any); it has another class
    count than ``class_names``, or other names (compared ignoring case) than it was exported with. Those
    messages name ``label_path`` when given (the file the names were read from), else they ask for the
    model's label file. OSError/ValueError naming the file when it is missing, is a PyTorch checkpoint, or
    cannot be loaded."""
    providers, _ = onnx_providers(device)
    if is_pytorch_checkpoint(model_path):
        raise ValueError(f"{model_path}: this is a PyTorch checkpoint, not an ONNX model: drop --backend onnx")
    predictor = OnnxPredictor(model_path, providers=providers, candidate_size=candidate_size,
                              num_threads=num_threads, optimization=optimization)
    exported = predictor.metadata
    if resolution and parse_resolution(resolution) != tuple(predictor.size):
        raise ValueError(f"{model_path}: exported at {format_size(predictor.size)}, not "
                         f"{format_size(parse_resolution(resolution))}; export again with --resolution {resolution}")
    if net_type is not None and exported.net_type != net_type:
        raise ValueError(f"{model_path}: exported from {exported.net_type}, not {net_type}")
    if exported.num_classes != len(class_names):
        if label_path is not None:
            raise ValueError(f"{label_path}: {len(class_names)} classes, but {model_path} has {exported.num_classes}; "
                             "check the label file")
        raise ValueError(f"{model_path}: exported for {exported.num_classes} classes, but the labels give "
                         f"{len(class_names)}; pass the model's label file with --label_file")
    recorded = list(exported.class_names or [])
    if recorded and [name.lower() for name in recorded] != [name.lower() for name in class_names]:
        given = f"{label_path} lists" if label_path is not None else "the class names given are"
        raise ValueError(f"{given} {list(class_names)}, but {model_path} was exported with the classes {recorded}; "
                         "pass the label file it was trained with")
    return predictor


def is_pytorch_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file that torch.save wrote (a zip archive, or the older pickle format),
    told by its first bytes: ONNX Runtime would only say its protobuf does not parse."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def exported_label_file(model_path: str | os.PathLike) -> Optional[str]:
    """The ``.labels.txt`` written beside an exported model, or None when there is none."""
    _, labels_path = side_file_paths(model_path)
    return labels_path if os.path.isfile(labels_path) else None


def describe_precision(predictor: OnnxPredictor) -> str:
    """``"float32"`` or ``"INT8 (minmax, 200 calibration images)"`` for an ``OnnxPredictor``, for reports."""
    quantization = getattr(predictor.metadata, "quantization", None)
    if not quantization:
        return "float32"
    return (f"INT8 ({quantization.get('calibration_method', '?')}, "
            f"{quantization.get('calibration_images', '?')} calibration images)")


def input_size_of(predictor: OnnxPredictor) -> List[int]:
    """``[width, height]`` the predictor resizes images to (its ``size``: an int for a square, or a pair)."""
    size = predictor.size
    return [int(size), int(size)] if isinstance(size, int) else [int(value) for value in size]

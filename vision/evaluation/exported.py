"""Evaluating an exported model: an ``OnnxPredictor`` for any file ``convert_to_caffe2_models.py`` writes
(float32 or INT8, with or without the NMS graph), checked against the net type and classes it is
evaluated with. ``vision.evaluation.evaluate`` then runs it exactly as a PyTorch predictor."""
from __future__ import annotations

import os
from typing import Optional, Sequence

from vision.export.metadata import side_file_paths


def exported_label_file(model_path: str | os.PathLike) -> Optional[str]:
    """The ``.labels.txt`` written beside an exported model, or None when there is none."""
    _, labels_path = side_file_paths(model_path)
    return labels_path if os.path.isfile(labels_path) else None


def open_exported_model(model_path: str | os.PathLike, class_names: Sequence[str], net_type: Optional[str] = None,
                        device: Optional[str] = None, num_threads: int = 0, optimization: str = "all"):
    """An ``OnnxPredictor`` for ``model_path`` on ``device`` (``cpu``, ``cuda[:N]``; None: CUDA when this
    onnxruntime has it). ValueError naming the file when it was exported from another net type than
    ``net_type`` (None: any) or for another class count than ``class_names`` (BACKGROUND first)."""
    from vision.export.onnx_predictor import OnnxPredictor
    from vision.inference import onnx_providers

    providers, _ = onnx_providers(device)
    predictor = OnnxPredictor(model_path, providers=providers, num_threads=num_threads, optimization=optimization)
    exported = predictor.metadata
    if net_type is not None and exported.net_type != net_type:
        raise ValueError(f"{model_path}: exported from {exported.net_type}, not {net_type}")
    if exported.num_classes != len(class_names):
        raise ValueError(f"{model_path}: exported for {exported.num_classes} classes, but the labels give "
                         f"{len(class_names)}; pass the model's label file with --label_file")
    return predictor


def describe_precision(predictor) -> str:
    """``"float32"`` or ``"INT8 (minmax, 200 images)"`` for an ``OnnxPredictor``, for reports."""
    quantization = getattr(predictor.metadata, "quantization", None)
    if not quantization:
        return "float32"
    return (f"INT8 ({quantization.get('calibration_method', '?')}, "
            f"{quantization.get('calibration_images', '?')} calibration images)")


def input_size_of(predictor) -> list:
    """``[width, height]`` the predictor resizes images to (its ``size``: an int for a square, or a pair)."""
    size = predictor.size
    return [int(size), int(size)] if isinstance(size, int) else [int(value) for value in size]

"""A detector ready to run on images: a predictor of either backend (PyTorch or ONNX Runtime) with its
class names. Used by ``run_ssd_example.py``, ``run_ssd_live_demo.py`` and Python code.

    detector = load_detector("mb1-ssd", "models/mb1-ssd.pth", "models/voc-model-labels.txt")
    boxes, labels, probs = detector.detect(image_rgb, top_k=10, prob_threshold=0.4)

With ``backend="onnx"`` torch is not imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np

from vision.utils.image_size import format_size, parse_resolution
from vision.utils.labels import read_label_file

BACKENDS = ("pytorch", "onnx")


@dataclass
class Detector:
    """A predictor of either backend with the class names; ``detect`` returns numpy arrays:
    boxes float32 ``(K, 4)`` pixels corner form, labels int64 ``(K,)``, probs float32 ``(K,)``."""

    predictor: Any
    class_names: List[str]
    backend: str
    device: str

    @property
    def input_size(self) -> Tuple[int, int]:
        """``(width, height)`` every image is resized to before the net."""
        return tuple(self.predictor.size)

    def detect(self, image_rgb: np.ndarray, top_k: int = -1, prob_threshold: Optional[float] = None
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes, labels, probs = self.predictor.predict(image_rgb, top_k=top_k, prob_threshold=prob_threshold)
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
                np.asarray(probs, dtype=np.float32))


def load_detector(net_type: str, model_path: str, label_path: str, backend: str = "pytorch",
                  device: Optional[str] = None, candidate_size: Optional[int] = None,
                  mb2_width_mult: float = 1.0, resolution: Optional[str] = None, onnx_threads: int = 0,
                  onnx_optimization: str = "all") -> Detector:
    """Read the label file and load the model for ``backend``. ``model_path`` may be a zoo name or URL
    (PyTorch backend, ``vision.zoo``); ``label_path`` ``-`` means that zoo entry's labels.
    ``candidate_size``: boxes per class before NMS (None: the net type's default, 200 for the original's
    types, or what a postprocess graph was exported with). ``resolution``: the input size, ``"N"`` or
    ``"WxH"`` (PyTorch: default the size in the ``.pth.json`` sidecar, else native; ONNX: the file's own
    size, and another one is an error). Raises ValueError/OSError with one-line messages naming the file: a missing or empty label file, a checkpoint of another class count or net
    type, an ONNX file exported from another net type or for another class count. ``onnx_threads``,
    ``onnx_optimization``: the ONNX Runtime session's intra-op threads and graph optimisation level."""
    if label_path == "-":  # the zoo entry's labels (vision.zoo imports torch, so only when asked)
        from vision.zoo import resolve_labels

        label_path = resolve_labels(label_path, model_path)
    class_names = read_label_file(label_path)
    if backend == "onnx":
        from vision.export.onnx_predictor import OnnxPredictor

        providers, device_name = onnx_providers(device)
        predictor = OnnxPredictor(model_path, providers=providers, candidate_size=candidate_size,
                                  num_threads=onnx_threads, optimization=onnx_optimization)
        exported = predictor.metadata
        if resolution and parse_resolution(resolution) != predictor.size:
            raise ValueError(f"{model_path}: exported at {format_size(predictor.size)}, not "
                             f"{format_size(parse_resolution(resolution))}; export again with --resolution {resolution}")
        if exported.net_type != net_type:
            raise ValueError(f"{model_path}: exported from {exported.net_type}, not {net_type}")
        if exported.num_classes != len(class_names):
            raise ValueError(f"{label_path}: {len(class_names)} classes, but {model_path} has {exported.num_classes}; "
                             "check the label file")
        return Detector(predictor, class_names, backend, device_name)
    if backend != "pytorch":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    import torch

    from vision.ssd.registry import create_net, create_predictor
    from vision.ssd.sidecar import resolve_image_size

    torch_device = torch.device(device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
    image_size = resolve_image_size(resolution, model_path, net_type)
    net = create_net(net_type, len(class_names), is_test=True, mb2_width_mult=mb2_width_mult, image_size=image_size)
    net.load(model_path)
    predictor = create_predictor(net_type, net.to(torch_device).eval(), candidate_size=candidate_size,
                                 device=torch_device)
    return Detector(predictor, class_names, backend, str(torch_device))


def onnx_providers(device: Optional[str]) -> Tuple[list, str]:
    """ONNX Runtime providers for a ``--device`` value: ``cpu``; ``cuda`` / ``cuda:N`` (an error when this
    onnxruntime has no CUDA provider); None: CUDA when available, else CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device is None:
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(f"--device {device}: this onnxruntime has no CUDA provider (it has {', '.join(available)})")
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"
    raise ValueError(f"--device {device}: the onnx backend runs on cpu or cuda[:N]")

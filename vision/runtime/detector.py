"""A detector ready to run on images: a predictor of either backend (PyTorch or ONNX Runtime) with its
class names. Used by ``run_ssd_example.py``, ``run_ssd_live_demo.py`` and Python code.

    detector = load_detector("mb1-ssd", "models/mb1-ssd.pth", "models/voc-model-labels.txt")
    boxes, labels, probs = detector.detect(image_rgb, top_k=10, prob_threshold=0.4)

With ``backend="onnx"`` torch is not imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from vision.utils.image_size import parse_resolution
from vision.utils.labels import read_label_file

BACKENDS = ("pytorch", "onnx")


@dataclass
class Detector:
    """A predictor of either backend with the class names; ``detect`` returns numpy arrays:
    boxes float32 ``(K, 4)`` pixels corner form, labels int64 ``(K,)``, probs float32 ``(K,)``.
    ``device``: where it runs (``"cpu"``, ``"cuda:0"``)."""

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
        """Detections in one RGB uint8 ``(H, W, 3)`` image, at most ``top_k`` per class (-1: all), scores
        above ``prob_threshold`` (None: the predictor's filter threshold)."""
        boxes, labels, probs = self.predictor.predict(image_rgb, top_k=top_k, prob_threshold=prob_threshold)
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
                np.asarray(probs, dtype=np.float32))

    def expect_images(self, count: Optional[int]) -> None:
        """Say how many images are coming (None: an open-ended stream): a PyTorch predictor with
        ``engine="auto"`` then builds its CPU engine when they pay for it (``vision.ssd.engines``)."""
        expect = getattr(self.predictor, "expect_images", None)
        if expect is not None:
            expect(count)


def load_detector(net_type: str, model_path: str, label_path: str, backend: str = "pytorch",
                  device: Optional[str] = None, candidate_size: Optional[int] = None,
                  mb2_width_mult: float = 1.0, resolution: Optional[str] = None, onnx_threads: int = 0,
                  onnx_optimization: str = "all", engine: str = "auto",
                  engine_report: Optional[Callable[[str], None]] = None) -> Detector:
    """Read the label file and load the model for ``backend``.

    model_path: a ``.pth`` (a file, zoo name or URL: ``vision.ssd.weights.load_weights``) or, with
    ``backend="onnx"``, an exported ``.onnx`` (``vision.export.exported.open_exported_model``).
    label_path: ``-`` means that zoo entry's labels. candidate_size: boxes per class before NMS (None: the
    net type's default, 200 for the original's types, or what a postprocess graph was exported with).
    resolution: the input size, ``"N"`` or ``"WxH"`` (PyTorch: default the size in the ``.pth.json``
    sidecar, else native; ONNX: the file's own size, and another one is an error). device: ``cpu``,
    ``cuda``, ``cuda:N`` (None: CUDA when available). onnx_threads, onnx_optimization: the ONNX Runtime
    session's intra-op threads and graph optimisation level. engine: what runs a ``.pth`` net's forward pass
    (``vision.ssd.engines``: ``auto``, ``eager``, ``onnxruntime``, ``torchscript``, ``compile``); engine_report
    gets the one line a build prints (None: the predictor's logger).
    Raises ValueError/OSError with one-line messages naming the file: a missing or empty label file, a
    label file whose classes differ from those the checkpoint's sidecar records (both lists shown), a
    checkpoint of another class count or net type, an ONNX file exported from another net type, for another
    class count or at another size, a ``--device`` this machine does not have.
    """
    if label_path == "-":  # the zoo entry's labels; vision.zoo imports torch (start-up time of the ONNX path)
        from vision.zoo import resolve_labels

        label_path = resolve_labels(label_path, model_path)
    class_names = read_label_file(label_path)
    if backend == "onnx":
        # onnxruntime is an optional dependency, needed by this backend only
        from vision.export.exported import onnx_providers, open_exported_model

        _, device_name = onnx_providers(device)
        predictor = open_exported_model(model_path, class_names, net_type=net_type, device=device,
                                        num_threads=onnx_threads, optimization=onnx_optimization,
                                        candidate_size=candidate_size, resolution=resolution, label_path=label_path)
        return Detector(predictor, class_names, backend, device_name)
    if backend != "pytorch":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    # torch is imported by this backend only (start-up time and installs of the ONNX path)
    from vision.ssd.registry import create_predictor
    from vision.ssd.weights import load_net
    from vision.utils.device import torch_device as checked_device

    torch_device = checked_device(device)
    image_size = parse_resolution(resolution) if resolution else None
    net = load_net(net_type, model_path, len(class_names), image_size=image_size, is_test=True,
                   mb2_width_mult=mb2_width_mult, class_names=class_names, label_file=label_path)
    predictor = create_predictor(net_type, net.to(torch_device).eval(), candidate_size=candidate_size,
                                 device=torch_device, engine=engine)
    if engine_report is not None:
        predictor.engine_report = engine_report
    return Detector(predictor, class_names, backend, str(torch_device))

"""Deploying detectors: the export pipeline of ``convert_to_caffe2_models.py`` (``pipeline``), ONNX export
(``onnx_export``), the postprocess (NMS) graph (``postprocess``), checks of an exported file (``checks``),
INT8 quantization (``quantize``, ``compare``), the files beside a model (``metadata``, ``files``), and
running an exported file (``onnx_predictor``, opened for use and checked by ``exported``).

Importing this package does not import torch; ``metadata``, ``files``, ``postprocess``, ``onnx_predictor``
and ``exported`` never do, so a deployment can read and run exported models with numpy, OpenCV, onnx and
onnxruntime alone.
"""

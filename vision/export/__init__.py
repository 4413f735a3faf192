"""Deploying detectors: ONNX export (``onnx_export``), the postprocess (NMS) graph (``postprocess``), checks
of an exported file (``checks``) and the JSON beside it (``metadata``).

Importing this package does not import torch; ``metadata`` and ``postprocess`` never do, so a deployment
can read exported models with numpy, onnx and onnxruntime alone.
"""

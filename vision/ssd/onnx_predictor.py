"""Alias: the ONNX predictor lives in :mod:`vision.export.onnx_predictor`, next to the export code."""
import sys

from vision.export import onnx_predictor as _onnx_predictor

sys.modules[__name__] = _onnx_predictor

"""An SSD traced to ONNX: the one export helper, used by the predictor's ONNX Runtime engine
(:mod:`vision.ssd.engines`) and by the export pipeline (:mod:`vision.export.onnx_export`).

The graph is the ``is_test`` net: input ``input_0`` float32 ``(N, 3, H, W)`` (normalised), outputs
``scores`` ``(N, P, C)`` softmaxed and ``boxes`` ``(N, P, 4)`` corner form 0..1, the priors held in the graph.
torch writes the bytes itself, so the TorchScript-based exporter needs no ``onnx`` package; the dynamo
exporter needs ``onnxscript``.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Sequence, Tuple

import torch
from torch import nn

INPUT_NAME = "input_0"
SCORES_NAME = "scores"
BOXES_NAME = "boxes"
OUTPUT_NAMES = (SCORES_NAME, BOXES_NAME)


def trace_to_onnx(net: nn.Module, image_size: Tuple[int, int], opset: int, dynamic_batch: bool,
                  exporter: str = "torchscript", output_names: Sequence[str] = OUTPUT_NAMES,
                  input_name: str = INPUT_NAME) -> bytes:
    """The serialized ONNX model of ``net`` run as if built with ``is_test=True``, in eval mode.

    image_size: ``(width, height)`` of the input (the net's ``config.image_size``). dynamic_batch: the batch
    axis is free, named ``batch`` (else 1). exporter: ``"torchscript"`` (``dynamo=False``, opsets 11-17) or
    ``"dynamo"`` (opset 17 or newer). ``net.is_test`` and its training flag are set for the trace and put
    back afterwards; nothing else of ``net`` changes.
    """
    width, height = image_size
    device = next(net.parameters()).device
    # Batch 2 when the batch is free: the dynamo exporter would fix a size-1 axis to 1.
    example = torch.randn(2 if dynamic_batch else 1, 3, height, width,
                          generator=torch.Generator().manual_seed(0)).to(device)
    was_test, was_training = getattr(net, "is_test", True), net.training
    net.is_test = True
    net.eval()
    try:
        # Both exporters warn a lot (tracer notes, deprecation of the TorchScript one) and the dynamo one
        # prints progress on stdout: callers report the outcome themselves.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                buffer = io.BytesIO()
                dynamic_axes = ({input_name: {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
                                if dynamic_batch else None)
                torch.onnx.export(net, (example,), buffer, dynamo=False, opset_version=opset, input_names=[input_name],
                                  output_names=list(output_names), dynamic_axes=dynamic_axes, do_constant_folding=True)
                return buffer.getvalue()
            if exporter != "dynamo":
                raise ValueError(f"exporter must be torchscript or dynamo, got {exporter!r}")
            dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
            program = torch.onnx.export(net, (example,), dynamo=True, opset_version=opset, input_names=[input_name],
                                        output_names=list(output_names), dynamic_shapes=dynamic_shapes,
                                        external_data=False, verbose=False)
            return program.model_proto.SerializeToString()
    finally:
        net.is_test = was_test
        net.train(was_training)

"""Exporting an SSD to ONNX with the input/output names deployments rely on.

The file contract (also in docs/deploy.md): input ``input_0`` float32 ``(N, 3, H, W)``, RGB, already
normalised with the net's mean/std; outputs ``scores`` ``(N, P, C)`` softmaxed and ``boxes`` ``(N, P, 4)``
corner form 0..1 (the names jetson-inference's ``detectnet --input-blob=input_0 --output-cvg=scores
--output-bbox=boxes`` expects). Beside ``x.onnx``: ``x.labels.txt`` (class names, one a line) and
``x.json`` (see ``vision.export.metadata``). With ``with_postprocess`` the graph also selects and
suppresses boxes (see ``vision.export.postprocess``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import onnx

from vision.export.files import save_model_files
from vision.export.metadata import BOXES_NAME, INPUT_NAME, METADATA_KEY, SCORES_NAME, ModelMetadata, PostprocessInfo
from vision.export.postprocess import append_postprocess
from vision.ssd.onnx_graph import trace_to_onnx
from vision.ssd.ssd import SSD

DEFAULT_OPSET = 13
EXPORTERS = ("auto", "torchscript", "dynamo")
TORCHSCRIPT_OPSETS = range(11, 18)
DYNAMO_MIN_OPSET = 17
DEFAULT_PROB_THRESHOLD = 0.01  # the PyTorch predictor's filter_threshold


def prior_table_document(prior_rule, net_type: str) -> Optional[Dict[str, Any]]:
    """The ``--priors`` table document of a net's prior rule, None for a net type's own rule."""
    to_document = getattr(prior_rule, "to_document", None)
    return to_document(net_type) if to_document is not None else None


def resolve_exporter(exporter: str, opset: int) -> str:
    """``"torchscript"`` or ``"dynamo"``: ``auto`` takes the TorchScript-based exporter for opsets 11-17 and
    the dynamo one (needs onnxscript) above. ValueError for a combination the exporter cannot emit."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == "auto":
        exporter = "torchscript" if opset in TORCHSCRIPT_OPSETS else "dynamo"
    if exporter == "torchscript" and opset not in TORCHSCRIPT_OPSETS:
        raise ValueError(f"the TorchScript-based exporter emits opsets {TORCHSCRIPT_OPSETS.start}-"
                         f"{TORCHSCRIPT_OPSETS.stop - 1}, not {opset}; use --exporter dynamo for newer opsets")
    if exporter == "dynamo":
        if opset < DYNAMO_MIN_OPSET:
            raise ValueError(f"the dynamo exporter emits opset {DYNAMO_MIN_OPSET} or newer, not {opset}")
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise ValueError("the dynamo exporter needs the onnxscript package (pip install onnxscript)") from None
    return exporter


def export_onnx(net: SSD, net_type: str, class_names: Sequence[str], output_path: str | os.PathLike, *,
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, exporter: str = "auto",
                with_postprocess: bool = False, candidate_size: int = 200,
                prob_threshold: float = DEFAULT_PROB_THRESHOLD, mb2_width_mult: float = 1.0,
                side_paths: Optional[Tuple[str, str]] = None) -> ModelMetadata:
    """Write ``output_path`` (.onnx) and its ``.labels.txt`` and ``.json`` side files; return the metadata.

    net: an SSD of ``net_type`` (exported as if built with ``is_test=True``; its own flag is restored).
    class_names: BACKGROUND first, one per output class. dynamic_batch: the batch axis is free (else 1).
    with_postprocess: append the selection and NMS (outputs ``boxes`` ``(M, 4)``, ``scores``, ``labels``,
    ``batch_index``); ``candidate_size`` per class, ``prob_threshold`` the default of its threshold input.
    side_paths: ``(json_path, labels_path)`` instead of the names beside ``output_path`` (for a caller that
    stages the three files itself). Each file is written to a temporary name and renamed
    (``vision.utils.atomic``), so a failed export leaves no partial file.
    """
    if len(class_names) != net.num_classes:
        raise ValueError(f"{len(class_names)} class names for a net with {net.num_classes} classes")
    exporter = resolve_exporter(exporter, opset)
    config = net.config
    num_priors = int(net.priors.shape[0])
    scores_name, boxes_name = (("all_scores", "all_boxes") if with_postprocess else (SCORES_NAME, BOXES_NAME))

    model = _trace_to_onnx(net, config.image_size, opset, dynamic_batch, exporter, [scores_name, boxes_name])
    width, height = config.image_size
    postprocess = None
    if with_postprocess:
        postprocess = PostprocessInfo(candidate_size=candidate_size, iou_threshold=float(config.iou_threshold),
                                      default_prob_threshold=float(prob_threshold))
        append_postprocess(model, scores_name, boxes_name, net.num_classes, num_priors, postprocess.iou_threshold,
                           candidate_size, postprocess.default_prob_threshold)

    metadata = ModelMetadata(
        net_type=net_type,
        image_size=width if width == height else [width, height],  # an int for squares, as before
        image_mean=[float(v) for v in np.broadcast_to(np.asarray(config.image_mean, dtype=np.float64), (3,))],
        image_std=float(config.image_std),
        center_variance=float(config.center_variance),
        size_variance=float(config.size_variance),
        iou_threshold=float(config.iou_threshold),
        class_names=list(class_names),
        num_priors=num_priors,
        dynamic_batch=dynamic_batch,
        opset=opset,
        exporter=exporter,
        mb2_width_mult=float(mb2_width_mult),
        postprocess=postprocess,
        output_names=[output.name for output in model.graph.output],
        priors=prior_table_document(config.prior_rule, net_type),
    )
    onnx.helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    model.producer_name = "pytorch-ssd-toolkit"

    save_model_files(model, metadata, output_path, side_paths)
    return metadata


def _trace_to_onnx(net: SSD, image_size: Tuple[int, int], opset: int, dynamic_batch: bool, exporter: str,
                   output_names: Sequence[str]) -> onnx.ModelProto:
    """The is_test graph as an ONNX model: the predictor's engine export (``vision.ssd.onnx_graph``)."""
    return onnx.load_model_from_string(trace_to_onnx(net, image_size, opset, dynamic_batch, exporter, output_names,
                                                     INPUT_NAME))

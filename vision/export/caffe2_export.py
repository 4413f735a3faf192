"""Caffe2 ``.pb`` files from an exported ONNX model, as the original's convert script wrote them.

Caffe2 was removed from PyTorch in the 2.x series, so on current installs :func:`caffe2_backend` returns
None and nothing is written; the ONNX model is the deployable artefact.
"""
from __future__ import annotations

import os
from typing import List, Optional

import onnx

from vision.utils.atomic import write_bytes, write_text


def caffe2_backend() -> Optional[type]:
    """Caffe2's ONNX backend class, or None when ``caffe2`` cannot be imported."""
    try:
        from caffe2.python.onnx.backend import Caffe2Backend
    except ImportError:
        return None
    return Caffe2Backend


def export_caffe2(onnx_path: str, backend: type) -> List[str]:
    """Write ``<stem>_init_net.pb``/``.pbtxt`` and ``<stem>_predict_net.pb``/``.pbtxt`` beside ``onnx_path``
    (for ``models/mb1-ssd.onnx``: ``models/mb1-ssd_init_net.pb``, the original's names), each atomically;
    returns the paths."""
    stem = os.path.splitext(onnx_path)[0]
    init_net, predict_net = backend.onnx_graph_to_caffe2_net(onnx.load(onnx_path))
    written = []
    for name, net in (("init_net", init_net), ("predict_net", predict_net)):
        binary_path, text_path = f"{stem}_{name}.pb", f"{stem}_{name}.pbtxt"
        write_bytes(binary_path, net.SerializeToString())
        write_text(text_path, str(net))
        written += [binary_path, text_path]
    return written

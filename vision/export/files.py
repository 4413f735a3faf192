"""The files of one exported model, written together: the ``.onnx`` graph, its ``.json`` metadata and its
``.labels.txt`` (the contract is in docs/deploy.md). No torch import.

Each file is written atomically (``vision.utils.atomic``). A caller that must publish the three at once,
after checking them (the export pipeline), stages them itself and passes the staged side-file paths.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import onnx

from vision.export.metadata import ModelMetadata, side_file_paths, write_metadata
from vision.utils.atomic import staged_path
from vision.utils.labels import write_label_file


def save_model_files(model: onnx.ModelProto, metadata: ModelMetadata, onnx_path: str | os.PathLike,
                     side_paths: Optional[Tuple[str, str]] = None) -> None:
    """Write ``model`` to ``onnx_path``, ``metadata`` (JSON) and its class names (one a line) beside it.
    side_paths: ``(json_path, labels_path)`` instead of :func:`~vision.export.metadata.side_file_paths`
    of ``onnx_path``. WriteError (an OSError) naming the file that could not be written."""
    json_path, labels_path = side_paths or side_file_paths(onnx_path)
    with staged_path(onnx_path) as temporary:
        onnx.save_model(model, temporary)
    write_label_file(labels_path, list(metadata.class_names))
    write_metadata(onnx_path, metadata, json_path=json_path)

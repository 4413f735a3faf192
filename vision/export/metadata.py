"""The JSON file written beside an exported ``.onnx`` model, so programs can use the model without this
package: what the input expects and what the outputs mean. No torch import (the ONNX predictor reads it).

For ``models/mb1-ssd.onnx`` the side files are ``models/mb1-ssd.json`` and ``models/mb1-ssd.labels.txt``.
The same JSON text is also stored in the model's ``metadata_props`` under the key ``"ssd"``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from vision.utils.atomic import write_text

FORMAT_NAME = "pytorch-ssd-onnx"
FORMAT_VERSION = 1
METADATA_KEY = "ssd"

INPUT_NAME = "input_0"
SCORES_NAME = "scores"
BOXES_NAME = "boxes"
# Extra outputs and optional inputs of a graph exported with the postprocess (NMS) part.
LABELS_NAME = "labels"
BATCH_INDEX_NAME = "batch_index"
PROB_THRESHOLD_INPUT = "prob_threshold"
MAX_PER_CLASS_INPUT = "max_per_class"


class MetadataError(ValueError):
    """The JSON beside a model is missing or malformed; the message names the file."""


@dataclass
class PostprocessInfo:
    """How the NMS part of a ``--with_postprocess`` graph was built.

    Per image and class (background excluded): scores strictly above ``prob_threshold`` (a graph input,
    ``default_prob_threshold`` when not fed), the ``candidate_size`` best, greedy NMS dropping boxes whose
    IoU with a kept box exceeds ``iou_threshold``, at most ``max_per_class`` kept (a graph input,
    ``candidate_size`` when not fed).
    """

    candidate_size: int
    iou_threshold: float
    default_prob_threshold: float
    prob_threshold_input: str = PROB_THRESHOLD_INPUT
    max_per_class_input: str = MAX_PER_CLASS_INPUT


@dataclass
class ModelMetadata:
    """Everything needed to feed an exported SSD and read its outputs.

    Input ``input_0``: float32 ``(N, 3, height, width)``, RGB, resized with bilinear interpolation,
    ``(pixel - image_mean) / image_std``; ``image_size`` is ``width`` (= ``height``) for a square input,
    else ``[width, height]`` (``input_shape`` in the JSON spells it out). Outputs without postprocess: ``scores``
    ``(N, P, C)`` softmaxed (class 0 is the background) and ``boxes`` ``(N, P, 4)`` corner form
    ``[x1, y1, x2, y2]`` relative to the image (0..1). With postprocess: ``boxes`` ``(M, 4)`` corner form
    0..1, ``scores`` ``(M,)``, ``labels`` ``(M,)`` int64 and ``batch_index`` ``(M,)`` int64.
    An INT8 file has the same inputs and outputs (still float32) and says how it was made in ``quantization``.
    """

    net_type: str
    image_size: Union[int, List[int]]
    image_mean: List[float]
    image_std: float
    center_variance: float
    size_variance: float
    iou_threshold: float
    class_names: List[str]
    num_priors: int
    dynamic_batch: bool
    opset: int
    exporter: str
    mb2_width_mult: float = 1.0
    postprocess: Optional[PostprocessInfo] = None
    # None for float32 files; for an INT8 file (vision.export.quantize) how it was quantized and calibrated.
    quantization: Optional[Dict[str, Any]] = None
    # The prior table the model was trained with (a ``--priors`` table document); None: the net type's own.
    # The graph holds the priors themselves (its boxes are decoded against them).
    priors: Optional[Dict[str, Any]] = None
    input_name: str = INPUT_NAME
    output_names: List[str] = field(default_factory=lambda: [SCORES_NAME, BOXES_NAME])
    color_order: str = "RGB"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_size(self) -> Tuple[int, int]:
        """``(width, height)`` of the input in pixels."""
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        width, height = self.image_size
        return int(width), int(height)

    def to_dict(self) -> Dict[str, Any]:
        data = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
        data.update(asdict(self))
        data["num_classes"] = self.num_classes
        width, height = self.input_size
        data["input_shape"] = ["N" if self.dynamic_batch else 1, 3, height, width]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "metadata") -> "ModelMetadata":
        if data.get("format") != FORMAT_NAME:
            raise MetadataError(f"{source}: not the metadata of an exported SSD (no \"format\": \"{FORMAT_NAME}\")")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise MetadataError(f"{source}: metadata version {data['version']} is newer than this reader "
                                f"({FORMAT_VERSION})")
        known = {name for name in cls.__dataclass_fields__}
        values = {key: value for key, value in data.items() if key in known}
        try:
            if values.get("postprocess") is not None:
                values["postprocess"] = PostprocessInfo(**values["postprocess"])
            metadata = cls(**values)
        except TypeError as error:
            raise MetadataError(f"{source}: incomplete metadata ({error})") from None
        if len(metadata.image_mean) != 3:
            raise MetadataError(f"{source}: image_mean must hold 3 values (R, G, B), got {metadata.image_mean}")
        return metadata


def side_file_paths(onnx_path: str | os.PathLike) -> Tuple[str, str]:
    """``(json_path, labels_path)`` beside ``onnx_path``: ``x.onnx`` -> ``x.json``, ``x.labels.txt``."""
    stem, extension = os.path.splitext(os.fspath(onnx_path))
    if extension.lower() != ".onnx":
        stem = os.fspath(onnx_path)
    return f"{stem}.json", f"{stem}.labels.txt"


def write_metadata(onnx_path: str | os.PathLike, metadata: ModelMetadata, json_path: Optional[str] = None) -> str:
    """Write the JSON beside ``onnx_path`` (or to ``json_path``), atomically, and return its path."""
    json_path = json_path or side_file_paths(onnx_path)[0]
    return write_text(json_path, metadata.to_json() + "\n")


def read_metadata(onnx_path: str | os.PathLike, embedded: Optional[str] = None) -> ModelMetadata:
    """The metadata of an exported model: the JSON beside ``onnx_path``, else ``embedded`` (the JSON text
    stored in the model's ``metadata_props["ssd"]``, when the caller has the model open).
    Raises MetadataError naming the file when neither exists."""
    onnx_path = os.fspath(onnx_path)
    json_path, _ = side_file_paths(onnx_path)
    if os.path.isfile(json_path):
        try:
            with open(json_path, encoding="utf-8") as stream:
                data = json.load(stream)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise MetadataError(f"{json_path}: not valid JSON ({error})") from None
        return ModelMetadata.from_dict(data, source=json_path)
    if embedded is None:
        raise MetadataError(f"{json_path}: no such file, and {onnx_path} holds no SSD metadata; "
                            "export the model with convert_to_caffe2_models.py")
    return ModelMetadata.from_dict(json.loads(embedded), source=onnx_path)

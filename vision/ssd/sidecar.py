"""The small JSON file beside every ``.pth`` training saves: ``<file>.pth.json`` with the net type, the input
size, the class names and the prior table, so evaluation, the example, the demo and export run the model
at the size and with the priors it was trained with, without being told.

    {"format": "pytorch-ssd-checkpoint", "version": 1, "net_type": "mb1-ssd-lite",
     "image_size": [512, 288], "class_names": ["BACKGROUND", "circle", ...], "mb2_width_mult": 1.0,
     "priors": {"format": "pytorch-ssd-priors", ...}}

``image_size`` is ``[width, height]``; ``priors`` is a ``--priors`` table document
(``vision.ssd.priors.TablePriors``), absent (or null) for the net type's own priors. A ``.pth`` without a
sidecar is the original toolkit's format: the net type's native size and priors. No torch import.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from vision.utils.atomic import write_text
from vision.utils.image_size import ImageSize, SizeLike, as_width_height, parse_resolution

FORMAT_NAME = "pytorch-ssd-checkpoint"
FORMAT_VERSION = 1


class SidecarError(ValueError):
    """A sidecar that cannot be read, or that contradicts the command line; the message names the file."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a sidecar says about its ``.pth``: ``image_size`` is ``(width, height)``; ``priors`` the prior
    table document, None for the net type's own priors."""

    net_type: str
    image_size: ImageSize
    class_names: List[str]
    mb2_width_mult: float = 1.0
    priors: Optional[Dict[str, Any]] = None


def sidecar_path(checkpoint_path: str | os.PathLike) -> str:
    """``models/x.pth`` -> ``models/x.pth.json``."""
    return os.fspath(checkpoint_path) + ".json"


def write_sidecar(checkpoint_path: str | os.PathLike, net_type: str, image_size: SizeLike,
                  class_names: Sequence[str], mb2_width_mult: float = 1.0,
                  priors: Optional[Dict[str, Any]] = None) -> str:
    """Write ``<checkpoint_path>.json`` atomically; returns its path. ``priors``: the table document, None
    for the net type's own priors."""
    width, height = as_width_height(image_size)
    document = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "net_type": net_type, "image_size": [width, height],
                "class_names": list(class_names), "mb2_width_mult": float(mb2_width_mult)}
    if priors is not None:
        document["priors"] = priors
    return write_text(sidecar_path(checkpoint_path), json.dumps(document, indent=1) + "\n")


def read_sidecar(checkpoint_path: str | os.PathLike) -> Optional[CheckpointInfo]:
    """The sidecar of ``checkpoint_path``, or None when it has none. SidecarError naming the file when it
    is not valid JSON or lacks a field."""
    path = sidecar_path(checkpoint_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
        if document.get("format") != FORMAT_NAME:
            raise SidecarError(f"{path}: not a checkpoint sidecar (no \"format\": \"{FORMAT_NAME}\")")
        priors = document.get("priors")
        if priors is not None and not isinstance(priors, dict):
            raise SidecarError(f"{path}: \"priors\" is not a prior table")
        return CheckpointInfo(str(document["net_type"]), as_width_height(document["image_size"]),
                              [str(name) for name in document.get("class_names", [])],
                              float(document.get("mb2_width_mult", 1.0)), priors)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SidecarError(f"{path}: not valid JSON ({error})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, SidecarError):
            raise
        raise SidecarError(f"{path}: incomplete checkpoint sidecar ({error!r})") from None


def check_class_names(checkpoint_path: str | os.PathLike, class_names: Sequence[str],
                      label_file: Optional[str] = None) -> None:
    """SidecarError, showing both lists, when the sidecar of ``checkpoint_path`` records class names that
    differ (compared ignoring case, as everywhere) from ``class_names``, read from ``label_file``: a label
    file in another order would otherwise give every detection the wrong name, and evaluation the wrong
    mAP. Nothing to check without a sidecar, or one that records no names."""
    info = read_sidecar(checkpoint_path)
    if info is None or not info.class_names:
        return
    if [name.lower() for name in info.class_names] == [name.lower() for name in class_names]:
        return
    given = f"{label_file} lists" if label_file else "the class names given are"
    raise SidecarError(f"{given} {list(class_names)}, but {sidecar_path(checkpoint_path)} records that the model was "
                       f"trained on {list(info.class_names)}; pass the label file it was trained with (its run's "
                       "labels.txt)")


def resolve_image_size(resolution: Optional[str], checkpoint_path: Optional[str], net_type: str) -> Optional[ImageSize]:
    """The input size to run ``checkpoint_path`` at: ``--resolution`` when given, else its sidecar's, else
    None (the net type's native size). SidecarError when the sidecar names another net type."""
    info = read_sidecar(checkpoint_path) if checkpoint_path else None
    if info is not None and info.net_type != net_type:
        raise SidecarError(f"{sidecar_path(checkpoint_path)}: the checkpoint is a {info.net_type}, not a {net_type}; "
                           f"use the net type {info.net_type}")
    if resolution:
        return parse_resolution(resolution)
    return info.image_size if info is not None else None

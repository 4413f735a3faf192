"""Prior boxes for any input size, from the original's spec tables and the net's measured feature maps.

At a net type's native size (300x300 for the original's types) the spec table is used unchanged
(:func:`vision.utils.box_utils.generate_ssd_priors`), so the priors are bit for bit the original's. At any
other ``(width, height)`` the feature-map shapes come from the net itself and, for a map of ``rows x cols``:

- centres are ``((j + 0.5) / cols, (i + 0.5) / rows)``;
- box sizes in pixels are the spec's sizes x ``min(width, height) / native_size``;
- aspect ratios hold in pixels: on a 640x360 input a 1:1 prior is square on the image, so its relative
  width is ``size / width`` and its relative height ``size / height``.

The order is the original's (see ``generate_ssd_priors``): maps in head order, row by row, column by
column, and per location the min square, the sqrt(min*max) square, then ``(w*sqrt(r), h/sqrt(r))`` and
``(w/sqrt(r), h*sqrt(r))`` for each aspect ratio r.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from vision.utils.box_utils import SSDBoxSizes, SSDSpec, generate_ssd_priors
from vision.utils.image_size import ImageSize

FeatureMapShapes = Tuple[Tuple[int, int], ...]  # (rows, cols) of each map the heads read, in head order


class PriorRule(Protocol):
    """How a net type lays out its priors. A net type with another layout (e.g. torchvision's
    ``DefaultBoxGenerator``) supplies its own object with these two members."""

    def native_feature_map_shapes(self) -> FeatureMapShapes:
        """The ``(rows, cols)`` of each head's map at the native size."""

    def priors(self, image_size: ImageSize, feature_map_shapes: FeatureMapShapes) -> Tensor:
        """float32 ``(P, 4)`` center-form priors, 0..1, in the order the heads' outputs are flattened."""


@dataclass(frozen=True)
class SpecPriors:
    """The original toolkit's rule: one :class:`SSDSpec` per feature map, written for ``native_size``."""

    specs: Tuple[SSDSpec, ...]
    native_size: int = 300
    clamp: bool = True

    def __post_init__(self) -> None:
        # Tuples throughout, so that the rule (and the configuration holding it) is hashable.
        specs = tuple(SSDSpec(int(s.feature_map_size), s.shrinkage, SSDBoxSizes(*s.box_sizes), tuple(s.aspect_ratios))
                      for s in self.specs)
        object.__setattr__(self, "specs", specs)

    def native_feature_map_shapes(self) -> FeatureMapShapes:
        return tuple((spec.feature_map_size, spec.feature_map_size) for spec in self.specs)

    def priors_per_location(self) -> Tuple[int, ...]:
        return tuple(2 + 2 * len(spec.aspect_ratios) for spec in self.specs)

    def priors(self, image_size: ImageSize, feature_map_shapes: FeatureMapShapes) -> Tensor:
        feature_map_shapes = tuple(tuple(shape) for shape in feature_map_shapes)
        if len(feature_map_shapes) != len(self.specs):
            raise ValueError(f"{len(feature_map_shapes)} feature maps for {len(self.specs)} prior specs")
        if tuple(image_size) == (self.native_size, self.native_size) and feature_map_shapes == self.native_feature_map_shapes():
            return generate_ssd_priors(list(self.specs), self.native_size, clamp=self.clamp)
        return scaled_spec_priors(self.specs, self.native_size, image_size, feature_map_shapes, self.clamp)


def scaled_spec_priors(specs: Sequence[SSDSpec], native_size: int, image_size: ImageSize,
                       feature_map_shapes: Sequence[Tuple[int, int]], clamp: bool = True) -> Tensor:
    """The spec table carried to ``image_size`` ``(width, height)`` on maps of ``(rows, cols)``: see the
    module docstring. Returns float32 ``(P, 4)`` center form, 0..1 (clamped unless ``clamp`` is False)."""
    width, height = image_size
    scale = min(width, height) / native_size  # pixels of this input per pixel of the native one
    per_map = []
    for spec, (rows, cols) in zip(specs, feature_map_shapes):
        row_index, col_index = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centers = np.stack([(col_index.ravel() + 0.5) / cols, (row_index.ravel() + 0.5) / rows], axis=1)  # (L, 2)
        small = spec.box_sizes.min * scale
        big = math.sqrt(spec.box_sizes.max * spec.box_sizes.min) * scale
        pixel_sizes = [(small, small), (big, big)]
        for ratio in spec.aspect_ratios:
            root = math.sqrt(ratio)
            pixel_sizes += [(small * root, small / root), (small / root, small * root)]
        sizes = np.asarray(pixel_sizes, dtype=np.float64) / np.array([width, height], dtype=np.float64)  # (A, 2)
        boxes = np.concatenate(
            [np.repeat(centers[:, None, :], len(sizes), axis=1), np.broadcast_to(sizes, (len(centers),) + sizes.shape)],
            axis=2,
        )
        per_map.append(boxes.reshape(-1, 4))
    priors = torch.from_numpy(np.concatenate(per_map).astype(np.float32))
    if clamp:
        priors.clamp_(0.0, 1.0)
    return priors

"""Every prior rule of the toolkit in one module: the original's spec tables and torchvision's
``DefaultBoxGenerator`` layout, for any input size, from the net's measured feature maps.

Priors are float32 ``(P, 4)`` center form ``[cx, cy, w, h]``, relative to the image (0..1), in the order
the heads' outputs are flattened. A rule has ``native_feature_map_shapes()``, ``priors_per_location()``
and ``priors(image_size, feature_map_shapes)``; an ``SSDConfig`` holds one.

**The original's spec rule** (:class:`SpecPriors`, :func:`generate_ssd_priors`). At a net type's native
size (300x300 for the original's types) the spec table is used unchanged, so the priors are bit for bit
the original's. At any other ``(width, height)`` the feature-map shapes come from the net itself and,
for a map of ``rows x cols``:

- centres are ``((j + 0.5) / cols, (i + 0.5) / rows)``;
- box sizes in pixels are the spec's sizes x ``min(width, height) / native_size``;
- aspect ratios hold in pixels: on a 640x360 input a 1:1 prior is square on the image, so its relative
  width is ``size / width`` and its relative height ``size / height``.

The order is the original's: maps in head order, row by row, column by column, and per location the min
square, the sqrt(min*max) square, then ``(w*sqrt(r), h/sqrt(r))`` and ``(w/sqrt(r), h*sqrt(r))`` for each
aspect ratio r.

**torchvision's rule** (:class:`DefaultBoxPriors`) runs
``torchvision.models.detection.anchor_utils.DefaultBoxGenerator`` on maps of the measured shapes and turns
its anchors (corner form, pixels) into center form divided by the image size. torchvision clamps only the
widths and heights to [0, 1] (``clip=True``), so with ``steps`` (ssd300: 300 / 8 = 37.5 cells over a
38-cell map) centres reach 1.0133; that is kept. ``steps`` are pixels of the native size; at another
input size they would put centres far outside the image, so there the centres follow the maps
themselves, ``(j + 0.5) / cols``, as ``DefaultBoxGenerator`` does without steps.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from vision.utils.image_size import ImageSize

FeatureMapShapes = Tuple[Tuple[int, int], ...]  # (rows, cols) of each map the heads read, in head order

SSDBoxSizes = collections.namedtuple("SSDBoxSizes", ["min", "max"])
SSDSpec = collections.namedtuple("SSDSpec", ["feature_map_size", "shrinkage", "box_sizes", "aspect_ratios"])


def generate_ssd_priors(specs: Sequence[SSDSpec], image_size: int, clamp: bool = True) -> Tensor:
    """Prior boxes for the given feature-map specs, as the original computes them.

    Returns float32 ``(P, 4)`` center-form boxes relative to the image, ordered as the heads' outputs
    are flattened (see the module docstring). Centers are ``(i + 0.5) / (image_size / shrinkage)``, as in
    the original (not ``/ feature_map_size``).
    """
    per_map = []
    for spec in specs:
        cells = image_size / spec.shrinkage
        centers = _centers(spec.feature_map_size, spec.feature_map_size, cells, cells)
        small = spec.box_sizes.min / image_size
        big = math.sqrt(spec.box_sizes.max * spec.box_sizes.min) / image_size
        per_map.append(_boxes_at(centers, _square_and_ratio_sizes(small, big, spec.aspect_ratios)))
    return _as_priors(per_map, clamp)


def _centers(rows: int, cols: int, cells_x: float, cells_y: float) -> np.ndarray:
    """float64 ``(rows * cols, 2)`` cell centres ``((j + 0.5) / cells_x, (i + 0.5) / cells_y)``, row by row."""
    row_index, col_index = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.stack([(col_index.ravel() + 0.5) / cells_x, (row_index.ravel() + 0.5) / cells_y], axis=1)


def _square_and_ratio_sizes(small: float, big: float, aspect_ratios: Sequence[float]) -> np.ndarray:
    """float64 ``(A, 2)`` widths and heights of one location: the small square, the big square, then
    ``(small * sqrt(r), small / sqrt(r))`` and its transpose for each aspect ratio r."""
    sizes = [(small, small), (big, big)]
    for ratio in aspect_ratios:
        root = math.sqrt(ratio)
        sizes += [(small * root, small / root), (small / root, small * root)]
    return np.asarray(sizes, dtype=np.float64)


def _boxes_at(centers: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Every size at every centre: ``(L, 2)`` x ``(A, 2)`` -> ``(L * A, 4)`` center form, location-major."""
    return np.concatenate([np.repeat(centers[:, None, :], len(sizes), axis=1),
                           np.broadcast_to(sizes, (len(centers),) + sizes.shape)], axis=2).reshape(-1, 4)


def _as_priors(per_map: Sequence[np.ndarray], clamp: bool) -> Tensor:
    # Computed in float64 and cast once, as the original builds them from Python floats.
    priors = torch.from_numpy(np.concatenate(per_map).astype(np.float32))
    if clamp:
        priors.clamp_(0.0, 1.0)
    return priors


class PriorRule(Protocol):
    """How a net type lays out its priors (see the module docstring)."""

    def native_feature_map_shapes(self) -> FeatureMapShapes:
        """The ``(rows, cols)`` of each head's map at the native size."""

    def priors_per_location(self) -> Tuple[int, ...]:
        """How many priors each location of each map has (the heads' outputs per location)."""

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
        native = (self.native_size, self.native_size)
        if tuple(image_size) == native and feature_map_shapes == self.native_feature_map_shapes():
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
        small = spec.box_sizes.min * scale
        big = math.sqrt(spec.box_sizes.max * spec.box_sizes.min) * scale
        pixel_sizes = _square_and_ratio_sizes(small, big, spec.aspect_ratios)
        sizes = pixel_sizes / np.array([width, height], dtype=np.float64)
        per_map.append(_boxes_at(_centers(rows, cols, cols, rows), sizes))
    return _as_priors(per_map, clamp)


@dataclass(frozen=True)
class DefaultBoxPriors:
    """``DefaultBoxGenerator(aspect_ratios, min_ratio, max_ratio, scales, steps, clip)`` and the
    ``(rows, cols)`` of the maps at the native size. Tuples throughout, so the rule is hashable."""

    aspect_ratios: Tuple[Tuple[int, ...], ...]
    native_shapes: FeatureMapShapes
    min_ratio: float = 0.15
    max_ratio: float = 0.9
    scales: Optional[Tuple[float, ...]] = None
    steps: Optional[Tuple[int, ...]] = None
    clip: bool = True

    def native_feature_map_shapes(self) -> FeatureMapShapes:
        return self.native_shapes

    def priors_per_location(self) -> Tuple[int, ...]:
        return tuple(self.generator().num_anchors_per_location())

    def generator(self, with_steps: bool = True):
        from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

        steps = list(self.steps) if self.steps and with_steps else None
        return DefaultBoxGenerator([list(r) for r in self.aspect_ratios], min_ratio=self.min_ratio,
                                   max_ratio=self.max_ratio, scales=list(self.scales) if self.scales else None,
                                   steps=steps, clip=self.clip)

    def anchors(self, image_size: ImageSize, feature_map_shapes: FeatureMapShapes) -> Tensor:
        """torchvision's anchors for one ``(width, height)`` image: float32 ``(P, 4)`` corner form, pixels."""
        from torchvision.models.detection.image_list import ImageList

        width, height = image_size
        if len(feature_map_shapes) != len(self.aspect_ratios):
            raise ValueError(f"{len(feature_map_shapes)} feature maps for {len(self.aspect_ratios)} prior levels")
        native = tuple(tuple(shape) for shape in feature_map_shapes) == tuple(self.native_shapes)
        with torch.device("cpu"):
            images = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
            maps = [torch.zeros(1, 1, rows, cols) for rows, cols in feature_map_shapes]
            return self.generator(with_steps=native)(images, maps)[0]

    def priors(self, image_size: ImageSize, feature_map_shapes: FeatureMapShapes) -> Tensor:
        """float32 ``(P, 4)`` center form, relative to ``image_size``, in torchvision's anchor order (maps in
        head order, row by row, column by column, then the level's boxes), not clamped."""
        with torch.device("cpu"):  # real values even when a net is being built on the meta device
            anchors = self.anchors(image_size, feature_map_shapes).double()
            width, height = image_size
            scale = torch.tensor([width, height], dtype=torch.float64)
            centers = (anchors[:, :2] + anchors[:, 2:]) / 2 / scale
            sizes = (anchors[:, 2:] - anchors[:, :2]) / scale
            if self.clip:  # torchvision clamps sizes to [0, 1]; the pixel round trip may overshoot by 1 ulp
                sizes = sizes.clamp(0.0, 1.0)
            return torch.cat([centers, sizes], dim=1).float()


TABLE_FORMAT = "pytorch-ssd-priors"
TABLE_VERSION = 1


class PriorTableError(ValueError):
    """A prior table that cannot be used; the message names the file (or source) and the problem."""


@dataclass(frozen=True)
class TablePriors:
    """An explicit table (``--priors FILE.json``, or fitted to a data set by ``--priors auto``): for each map
    the ``(width, height)`` of every prior of a location, relative to the image (0..1), so the table holds at
    any input size. Centres follow the measured maps, ``((j + 0.5) / cols, (i + 0.5) / rows)``; per location
    the priors come in the table's order. ``fitted_at``: the ``(width, height)`` it was made for (a note).

    Training stretches every image to the input, so a box keeps its relative size at any input size, and
    so does a prior of this table; on a finer grid its centres come closer to the boxes'."""

    sizes: Tuple[Tuple[Tuple[float, float], ...], ...]
    fitted_at: Optional[ImageSize] = None

    def __post_init__(self) -> None:
        # Six decimals (a millionth of the image): what the JSON file holds, so a table read back is equal.
        object.__setattr__(self, "sizes", tuple(tuple((round(float(w), 6), round(float(h), 6)) for w, h in level)
                                                for level in self.sizes))
        if self.fitted_at is not None:
            object.__setattr__(self, "fitted_at", (int(self.fitted_at[0]), int(self.fitted_at[1])))

    def native_feature_map_shapes(self) -> FeatureMapShapes:
        raise ValueError("a prior table has no native size: it is laid on the maps measured at the input size")

    def priors_per_location(self) -> Tuple[int, ...]:
        return tuple(len(level) for level in self.sizes)

    def priors(self, image_size: ImageSize, feature_map_shapes: FeatureMapShapes) -> Tensor:
        if len(feature_map_shapes) != len(self.sizes):
            raise ValueError(f"{len(feature_map_shapes)} feature maps for a prior table of {len(self.sizes)} maps")
        per_map = [_boxes_at(_centers(rows, cols, cols, rows), np.asarray(level, dtype=np.float64))
                   for level, (rows, cols) in zip(self.sizes, feature_map_shapes)]
        return _as_priors(per_map, clamp=True)

    def to_document(self, net_type: Optional[str] = None) -> dict:
        """The JSON document of ``--priors FILE.json`` (see docs/own_data.md)."""
        document = {"format": TABLE_FORMAT, "version": TABLE_VERSION}
        if net_type is not None:
            document["net_type"] = net_type
        if self.fitted_at is not None:
            document["fitted_at"] = list(self.fitted_at)
        document["maps"] = [[[w, h] for w, h in level] for level in self.sizes]
        return document

    @classmethod
    def from_document(cls, document: object, source: str = "prior table") -> "TablePriors":
        """The table of a JSON document; :class:`PriorTableError` naming ``source`` when it is not one."""
        if not isinstance(document, dict) or document.get("format") != TABLE_FORMAT:
            raise PriorTableError(f"{source}: not a prior table (no \"format\": \"{TABLE_FORMAT}\")")
        maps = document.get("maps")
        if not isinstance(maps, list) or not maps:
            raise PriorTableError(f"{source}: \"maps\" must be a list with one list of [width, height] per map")
        sizes = []
        for index, level in enumerate(maps):
            if not isinstance(level, list) or not level:
                raise PriorTableError(f"{source}: map {index} must list at least one [width, height]")
            pairs = []
            for pair in level:
                if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
                    raise PriorTableError(f"{source}: map {index}: {pair!r} is not a [width, height] pair of numbers")
                width, height = float(pair[0]), float(pair[1])
                if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
                    raise PriorTableError(f"{source}: map {index}: sizes must be positive, got {pair!r}")
                if width > 1 or height > 1:
                    raise PriorTableError(f"{source}: map {index}: {pair!r}: sizes are relative to the image, "
                                          "at most 1")
                pairs.append((width, height))
            sizes.append(tuple(pairs))
        fitted_at = document.get("fitted_at")
        return cls(tuple(sizes), tuple(fitted_at) if isinstance(fitted_at, list) and len(fitted_at) == 2 else None)

    def check_fits(self, priors_per_location: Sequence[int], net_type: str, source: str) -> None:
        """PriorTableError naming ``source`` unless the table has the net type's number of maps and priors
        per location (the heads' shapes)."""
        own = self.priors_per_location()
        if len(own) != len(priors_per_location):
            raise PriorTableError(f"{source}: {len(own)} maps, but {net_type} has {len(priors_per_location)} "
                                  f"(priors per location {list(priors_per_location)})")
        if tuple(own) != tuple(priors_per_location):
            raise PriorTableError(f"{source}: priors per location {list(own)} do not fit the heads of {net_type}, "
                                  f"which take {list(priors_per_location)}")

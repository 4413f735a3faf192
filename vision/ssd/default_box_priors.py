"""torchvision's prior layout (``DefaultBoxGenerator``) as a prior rule of :class:`vision.ssd.config.base.SSDConfig`.

The boxes are torchvision's own: the rule runs ``torchvision.models.detection.anchor_utils.DefaultBoxGenerator``
on maps of the measured shapes and turns its anchors (corner form, pixels) into center form divided by the
image size. torchvision clamps only the widths and heights to [0, 1] (``clip=True``), so with ``steps``
(ssd300: 300 / 8 = 37.5 cells over a 38-cell map) centres reach 1.0133; that is kept.

``steps`` are pixels of the native size. At another input size they would put centres far outside the
image (300-pixel cells over a 512-pixel input), so there the centres follow the maps themselves,
``(j + 0.5) / cols``, as ``DefaultBoxGenerator`` does without steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from vision.ssd.priors import FeatureMapShapes
from vision.utils.image_size import ImageSize


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

"""A net type's configuration as one frozen value: input size, preprocessing, box coding, matching, NMS and
the prior rule. Made once per net type at its native size (``<module>.native_config``) and carried to any
other size with :meth:`SSDConfig.at_size`; every consumer reads it from the net (``net.config``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Optional, Sequence, Tuple

import numpy as np
from torch import Tensor

from vision.ssd.priors import FeatureMapShapes, PriorRule, SpecPriors, SSDSpec
from vision.utils.image_size import ImageSize, SizeLike, as_width_height, format_size


@dataclass(frozen=True)
class SSDConfig:
    """Everything a net type's code needs besides its weights.

    image_size: ``(width, height)`` of the net's input in pixels; image_mean / image_std: RGB
    preprocessing ``(pixel - mean) / std``; center_variance / size_variance: box coding;
    iou_threshold: the predictor's NMS IoU; match_iou_threshold / neg_pos_ratio: training's
    prior-to-ground-truth matching and hard-negative ratio; prior_rule: how priors are laid out;
    feature_map_shapes: ``(rows, cols)`` of each map the heads read at ``image_size``.
    """

    image_size: ImageSize
    image_mean: Tuple[float, float, float]
    image_std: float
    prior_rule: PriorRule
    feature_map_shapes: FeatureMapShapes
    center_variance: float = 0.1
    size_variance: float = 0.2
    iou_threshold: float = 0.45
    match_iou_threshold: float = 0.5
    neg_pos_ratio: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", as_width_height(self.image_size))
        mean = np.broadcast_to(np.asarray(self.image_mean, dtype=np.float64).reshape(-1), (3,))
        object.__setattr__(self, "image_mean", tuple(float(v) for v in mean))
        object.__setattr__(self, "image_std", float(self.image_std))
        object.__setattr__(self, "feature_map_shapes", tuple((int(r), int(c)) for r, c in self.feature_map_shapes))

    @classmethod
    def from_specs(cls, specs: Sequence[SSDSpec], image_size: int, image_mean, image_std: float,
                   **settings) -> "SSDConfig":
        """The configuration of an original net type at its native ``image_size`` (a square)."""
        rule = SpecPriors(tuple(specs), native_size=int(image_size))
        return cls((image_size, image_size), image_mean, image_std, rule, rule.native_feature_map_shapes(), **settings)

    # -- derived values ---------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.image_size[0]

    @property
    def height(self) -> int:
        return self.image_size[1]

    @property
    def size_text(self) -> str:
        """``"640x360"``: the size as ``--resolution`` takes it."""
        return format_size(self.image_size)

    @property
    def specs(self) -> Optional[Tuple[SSDSpec, ...]]:
        """The original's spec table, for rules that have one (None otherwise)."""
        return getattr(self.prior_rule, "specs", None)

    @cached_property
    def _priors(self) -> Tensor:
        return self.prior_rule.priors(self.image_size, self.feature_map_shapes)

    @property
    def priors(self) -> Tensor:
        """float32 ``(P, 4)`` center-form priors, 0..1, in head output order (a fresh copy)."""
        return self._priors.clone()

    @property
    def num_priors(self) -> int:
        return int(self._priors.shape[0])

    def at_size(self, image_size: SizeLike, feature_map_shapes: FeatureMapShapes) -> "SSDConfig":
        """This configuration for input ``image_size`` (an int or ``(width, height)``), whose heads read maps
        of ``feature_map_shapes`` (measure them with ``vision.ssd.input_size.measure_feature_map_shapes``)."""
        return dataclasses.replace(self, image_size=as_width_height(image_size),
                                   feature_map_shapes=tuple(tuple(shape) for shape in feature_map_shapes))

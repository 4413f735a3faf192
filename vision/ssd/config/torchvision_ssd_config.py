"""Configurations of the net types built on torchvision's detection architectures: ``ssdlite320-mb3-large``
(``ssdlite320_mobilenet_v3_large``) and ``ssd300-vgg16`` (``ssd300_vgg16``), with torchvision's
normalisation, priors (``DefaultBoxGenerator`` settings) and postprocessing defaults.

Pixel values are 0..255 here: torchvision's mean/std on 0..1 inputs become ``255 * mean`` / ``255 * std``.
"""
from __future__ import annotations

from dataclasses import dataclass

from vision.ssd.config.base import SSDConfig
from vision.ssd.priors import DefaultBoxPriors


@dataclass(frozen=True)
class PostprocessDefaults:
    """torchvision's ``SSD`` postprocessing settings: ``score_thresh``, ``topk_candidates`` (per class, before
    NMS), ``detections_per_img`` (after NMS, over all classes)."""

    score_threshold: float
    candidate_size: int
    max_detections: int


ssdlite320_rule = DefaultBoxPriors(aspect_ratios=((2, 3),) * 6,
                                   native_shapes=((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)),
                                   min_ratio=0.2, max_ratio=0.95)
ssdlite320_config = SSDConfig((320, 320), (127.5, 127.5, 127.5), 127.5, ssdlite320_rule, ssdlite320_rule.native_shapes,
                              center_variance=0.1, size_variance=0.2, iou_threshold=0.55)
ssdlite320_postprocess = PostprocessDefaults(score_threshold=0.001, candidate_size=300, max_detections=300)

ssd300_rule = DefaultBoxPriors(aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
                               native_shapes=((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)),
                               scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), steps=(8, 16, 32, 64, 100, 300))
# torchvision: mean [0.48235, 0.45882, 0.40784], std 1/255 on 0..1, i.e. minus 255 * mean on 0..255.
ssd300_config = SSDConfig((300, 300), tuple(255.0 * m for m in (0.48235, 0.45882, 0.40784)), 1.0, ssd300_rule,
                          ssd300_rule.native_shapes, center_variance=0.1, size_variance=0.2, iou_threshold=0.45)
ssd300_postprocess = PostprocessDefaults(score_threshold=0.01, candidate_size=400, max_detections=200)

# torchvision's BoxCoder clamps dw/dh (after dividing by the weights 5, 5) at log(1000 / 16).
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)

"""Prior boxes and preprocessing of the MobileNet nets (mb1-ssd, mb1-ssd-lite, mb2-ssd-lite, mb3-*-ssd-lite)."""
import numpy as np

from vision.ssd.config.base import SSDConfig
from vision.ssd.priors import SSDBoxSizes, SSDSpec, generate_ssd_priors

image_size = 300
image_mean = np.array([127, 127, 127])  # RGB
image_std = 128.0
iou_threshold = 0.45
center_variance = 0.1
size_variance = 0.2

specs = [
    SSDSpec(19, 16, SSDBoxSizes(60, 105), [2, 3]),
    SSDSpec(10, 32, SSDBoxSizes(105, 150), [2, 3]),
    SSDSpec(5, 64, SSDBoxSizes(150, 195), [2, 3]),
    SSDSpec(3, 100, SSDBoxSizes(195, 240), [2, 3]),
    SSDSpec(2, 150, SSDBoxSizes(240, 285), [2, 3]),
    SSDSpec(1, 300, SSDBoxSizes(285, 330), [2, 3]),
]

priors = generate_ssd_priors(specs, image_size)

# The same settings as one value; nets made at another size carry it there with ``at_size``.
native_config = SSDConfig.from_specs(specs, image_size, image_mean, image_std, center_variance=center_variance,
                                     size_variance=size_variance, iou_threshold=iou_threshold)

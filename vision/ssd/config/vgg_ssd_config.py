"""Prior boxes and preprocessing of vgg16-ssd."""
import numpy as np

from vision.ssd.config.base import SSDConfig
from vision.ssd.priors import SSDBoxSizes, SSDSpec, generate_ssd_priors

image_size = 300
image_mean = np.array([123, 117, 104])  # RGB
image_std = 1.0
iou_threshold = 0.45
center_variance = 0.1
size_variance = 0.2

specs = [
    SSDSpec(38, 8, SSDBoxSizes(30, 60), [2]),
    SSDSpec(19, 16, SSDBoxSizes(60, 111), [2, 3]),
    SSDSpec(10, 32, SSDBoxSizes(111, 162), [2, 3]),
    SSDSpec(5, 64, SSDBoxSizes(162, 213), [2, 3]),
    SSDSpec(3, 100, SSDBoxSizes(213, 264), [2]),
    SSDSpec(1, 300, SSDBoxSizes(264, 315), [2]),
]

priors = generate_ssd_priors(specs, image_size)

# The same settings as one value; nets made at another size carry it there with ``at_size``.
native_config = SSDConfig.from_specs(specs, image_size, image_mean, image_std, center_variance=center_variance,
                                     size_variance=size_variance, iou_threshold=iou_threshold)

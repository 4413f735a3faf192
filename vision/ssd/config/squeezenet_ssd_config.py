"""Prior boxes and preprocessing of sq-ssd-lite: the MobileNet configuration, except that SqueezeNet 1.1
gives a 17x17 first feature map."""
from vision.ssd.config.base import SSDConfig
from vision.ssd.config.mobilenetv1_ssd_config import (  # noqa: F401
                                                      center_variance,
                                                      image_mean,
                                                      image_size,
                                                      image_std,
                                                      iou_threshold,
                                                      size_variance,
)
from vision.ssd.config.mobilenetv1_ssd_config import specs as _mobilenet_specs
from vision.ssd.priors import SSDBoxSizes, SSDSpec, generate_ssd_priors

specs = [SSDSpec(17, 16, SSDBoxSizes(60, 105), [2, 3])] + _mobilenet_specs[1:]

priors = generate_ssd_priors(specs, image_size)

native_config = SSDConfig.from_specs(specs, image_size, image_mean, image_std, center_variance=center_variance,
                                     size_variance=size_variance, iou_threshold=iou_threshold)

"""The original toolkit's import path for MobileNetV3 (``MobileNetV3_Large``, ``MobileNetV3_Small``)."""
from vision.nn.mobilenet_v3 import Block, SeModule  # noqa: F401
from vision.nn.mobilenet_v3 import MobileNetV3Large as MobileNetV3_Large  # noqa: F401
from vision.nn.mobilenet_v3 import MobileNetV3Small as MobileNetV3_Small  # noqa: F401

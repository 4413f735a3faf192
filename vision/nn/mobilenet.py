"""The original toolkit's import path for MobileNetV1."""
from vision.nn.mobilenet_v1 import MobileNetV1  # noqa: F401

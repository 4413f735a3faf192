"""Training, test and prediction transforms (numpy + OpenCV; see augmentation.py for why not v2)."""
from .augmentation import Expand, PhotometricDistort, RandomHorizontalFlip, RandomIoUCrop, SanitizeBoxes
from .pipelines import PredictionTransform, ResizeNormalize, TestTransform, TrainAugmentation

__all__ = [
    "TrainAugmentation", "TestTransform", "PredictionTransform", "ResizeNormalize",
    "PhotometricDistort", "Expand", "RandomIoUCrop", "RandomHorizontalFlip", "SanitizeBoxes",
]

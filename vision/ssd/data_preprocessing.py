"""Compatibility module: the original toolkit's users import the transforms from here."""
from vision.transforms.pipelines import PredictionTransform, TestTransform, TrainAugmentation

__all__ = ["TrainAugmentation", "TestTransform", "PredictionTransform"]

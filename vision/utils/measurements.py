"""Alias: the VOC AP code lives in :mod:`vision.evaluation.metrics`; this keeps the original's import path."""
import sys

from vision.evaluation import metrics as _metrics

sys.modules[__name__] = _metrics

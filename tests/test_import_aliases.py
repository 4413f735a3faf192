"""The original's import paths (and this project's earlier ones) still reach the moved modules."""
import importlib

import pytest


@pytest.mark.parametrize("alias, target", [
    ("vision.utils.measurements", "vision.evaluation.metrics"),
])
def test_alias_is_the_moved_module(alias, target):
    assert importlib.import_module(alias) is importlib.import_module(target)


def test_original_measurement_functions_importable():
    import numpy as np

    from vision.utils.measurements import compute_average_precision, compute_voc2007_average_precision

    precision, recall = np.array([1.0, 0.5]), np.array([0.5, 1.0])
    assert compute_average_precision(precision, recall) == pytest.approx(0.75)
    assert 0.0 < compute_voc2007_average_precision(precision, recall) <= 1.0


def test_original_misc_helpers(tmp_path):
    import torch

    from vision.utils.labels import read_label_file
    from vision.utils.misc import Timer, freeze_net_layers, store_labels, str2bool

    assert str2bool("True") is True and str2bool("0") is False
    timer = Timer()
    timer.start("step")
    assert timer.end("step") >= 0.0
    with pytest.raises(KeyError):
        timer.end("step")  # each start is ended once
    layer = torch.nn.Linear(2, 2)
    freeze_net_layers(layer)
    assert not any(parameter.requires_grad for parameter in layer.parameters())
    store_labels(tmp_path / "labels.txt", ["BACKGROUND", "cat"])
    assert read_label_file(str(tmp_path / "labels.txt")) == ["BACKGROUND", "cat"]

"""The predictor's CPU engines (vision.ssd.engines): detections equal eager's, the export cache, the fallback.

Which engine is tested on which net type, to keep the file fast: ``onnxruntime`` (the default, a build of
about a second) on every net type at its native size and at a rectangular 352x288; ``torchscript`` (the
fallback without onnxruntime, a build of a few seconds) on every net type at 352x288; ``compile`` (a build of
tens of seconds) on mb3-small-ssd-lite only, marked slow (``benchmarks/bench_predict.py --engines`` prints
every engine's largest score difference from eager on every net type).
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch

from tests.export.nets import realistic_net
from vision.export.checks import sample_images
from vision.ssd import engines
from vision.ssd.engines import EngineWarning
from vision.ssd.priors import TablePriors
from vision.ssd.registry import NET_TYPES, create_net, create_predictor

RECTANGLE = (352, 288)


def net_at(net_type: str, size=None):
    """A realistic (head-calibrated) net of ``net_type`` at ``size`` (None: native)."""
    net = realistic_net(net_type)
    if size is None:
        return net
    resized = create_net(net_type, 3, is_test=True, image_size=size).eval()
    resized.load_state_dict(net.state_dict())
    return resized


def assert_same_detections(found, expected):
    """The same detections: per image one-to-one pairs of the same label, scores within 1e-5 and boxes within
    a thousandth of a pixel. (Two boxes of a class whose scores differ by less than float32's rounding may
    come in either order, so pairs are found, not read off by position.)"""
    assert len(found) == len(expected)
    for (boxes, labels, probs), (want_boxes, want_labels, want_probs) in zip(found, expected):
        assert torch.equal(labels.sort().values, want_labels.sort().values)
        if len(labels) == 0:
            continue
        fits = ((labels[:, None] == want_labels[None, :]) & ((probs[:, None] - want_probs[None, :]).abs() <= 1e-5)
                & ((boxes[:, None, :] - want_boxes[None, :, :]).abs().amax(dim=2) <= 1e-3))
        taken = torch.zeros(len(want_labels), dtype=torch.bool)
        for row in range(len(labels)):
            choices = (fits[row] & ~taken).nonzero().flatten()
            assert len(choices) > 0, f"detection {row}: label {int(labels[row])}, score {float(probs[row]):.6f}"
            taken[choices[0]] = True


def engine_and_eager(net_type, net, engine, tmp_path, images):
    eager = create_predictor(net_type, net, engine="eager")
    predictor = create_predictor(net_type, net, engine=engine)
    predictor.engine_cache_folder = str(tmp_path)
    return predictor.predict_batch(images), eager.predict_batch(images), predictor


@pytest.mark.parametrize("size", [None, RECTANGLE], ids=["native", "352x288"])
@pytest.mark.parametrize("net_type", list(NET_TYPES))
def test_onnxruntime_engine_detections_equal_eager(net_type, size, tmp_path):
    net = net_at(net_type, size)
    found, expected, predictor = engine_and_eager(net_type, net, "onnxruntime", tmp_path, sample_images())
    assert predictor.last_engine_build is not None and predictor.last_engine_build.engine == "onnxruntime"
    assert sum(len(labels) for _, labels, _ in expected) > 0
    assert_same_detections(found, expected)


@pytest.mark.parametrize("net_type", list(NET_TYPES))
def test_torchscript_engine_detections_equal_eager(net_type, tmp_path):
    net = net_at(net_type, RECTANGLE)
    found, expected, predictor = engine_and_eager(net_type, net, "torchscript", tmp_path, sample_images())
    assert predictor.last_engine_build.engine == "torchscript"
    assert_same_detections(found, expected)


@pytest.mark.slow
def test_compile_engine_detections_equal_eager(tmp_path):
    net = net_at("mb3-small-ssd-lite", RECTANGLE)
    found, expected, predictor = engine_and_eager("mb3-small-ssd-lite", net, "compile", tmp_path, sample_images())
    assert predictor.last_engine_build.engine == "compile"
    assert_same_detections(found, expected)


def test_engine_runs_inside_inference_mode_and_leaves_the_net_alone(tmp_path):
    net = realistic_net("mb2-ssd-lite")
    before = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    module_types = [type(module) for module in net.modules()]
    predictor = create_predictor("mb2-ssd-lite", net, engine="onnxruntime")
    predictor.engine_cache_folder = str(tmp_path)
    with torch.inference_mode():  # as evaluation runs it
        predictor.predict_batch(sample_images(2))
    assert predictor.last_engine_build is not None
    assert predictor.net is net and net.is_test and not net.training
    assert [type(module) for module in net.modules()] == module_types
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_auto_builds_only_when_enough_images_come(tmp_path):
    net = realistic_net("mb1-ssd-lite")
    image = sample_images(1)[0]
    single = create_predictor("mb1-ssd-lite", net)
    single.engine_cache_folder = str(tmp_path)
    single.predict(image)
    assert single.last_engine_build is None and single.selected_engine() == "eager"

    told = create_predictor("mb1-ssd-lite", net)
    told.engine_cache_folder = str(tmp_path)
    told.expect_images(engines.MIN_IMAGES)
    assert told.selected_engine() == engines.auto_engine("mb1-ssd-lite")
    told.predict(image)
    assert told.last_engine_build is not None

    counting = create_predictor("mb1-ssd-lite", net)
    counting.engine_cache_folder = str(tmp_path)
    counting.predict_batch([image] * (engines.MIN_IMAGES - 1))
    assert counting.last_engine_build is None
    counting.predict(image)  # the MIN_IMAGES-th image
    assert counting.last_engine_build is not None

    off = create_predictor("mb1-ssd-lite", net, engine="eager")
    off.expect_images(None)
    assert off.selected_engine() == "eager"


def test_auto_falls_back_to_torchscript_without_onnxruntime(monkeypatch):
    monkeypatch.setattr(engines, "onnxruntime_available", lambda: False)
    assert engines.auto_engine("mb1-ssd") == "torchscript"
    with pytest.raises(ValueError, match="engine must be one of"):
        create_predictor("mb1-ssd", realistic_net("mb1-ssd-lite"), engine="tensorrt")


def _table_like(net) -> TablePriors:
    """A prior table with the heads' priors per location, other sizes than the net type's rule."""
    per_location = net.config.prior_rule.priors_per_location()
    return TablePriors(tuple(tuple((0.1 + 0.05 * level, 0.08 + 0.04 * index) for index in range(count))
                             for level, count in enumerate(per_location)))


def test_export_cache_is_reused_and_rebuilt_for_new_weights_size_or_priors(tmp_path):
    net = realistic_net("mb1-ssd-lite")
    image = sample_images(1)[0]

    def build(model):
        predictor = create_predictor("mb1-ssd-lite", model, engine="onnxruntime")
        predictor.engine_cache_folder = str(tmp_path)
        predictor.predict(image)
        return predictor.last_engine_build

    first = build(net)
    assert not first.from_cache and os.path.isfile(first.cache_path)
    again = build(net)  # another predictor, the same weights: the file is reused
    assert again.from_cache and again.cache_path == first.cache_path

    with torch.no_grad():
        net.regression_headers[0][-1].weight.mul_(1.5)
    new_weights = build(net)
    assert not new_weights.from_cache and new_weights.cache_path != first.cache_path

    resized = create_net("mb1-ssd-lite", 3, is_test=True, image_size=RECTANGLE).eval()
    resized.load_state_dict(net.state_dict())
    new_size = build(resized)
    assert not new_size.from_cache and new_size.cache_path not in (first.cache_path, new_weights.cache_path)

    tabled = create_net("mb1-ssd-lite", 3, is_test=True, priors=_table_like(net)).eval()
    tabled.load_state_dict(net.state_dict())
    new_priors = build(tabled)
    assert not new_priors.from_cache
    assert new_priors.cache_path not in (first.cache_path, new_weights.cache_path, new_size.cache_path)
    assert len(os.listdir(tmp_path)) == 4


def test_the_same_predictor_rebuilds_when_its_net_gets_new_weights(tmp_path):
    net = realistic_net("mb1-ssd-lite")
    images = sample_images(2)
    predictor = create_predictor("mb1-ssd-lite", net, engine="onnxruntime")
    predictor.engine_cache_folder = str(tmp_path)
    predictor.predict_batch(images)
    first = predictor.last_engine_build
    with torch.no_grad():
        net.classification_headers[1][-1].weight.mul_(2.0)
    found = predictor.predict_batch(images)
    assert predictor.last_engine_build is not first and predictor.last_engine_build.cache_path != first.cache_path
    assert_same_detections(found, create_predictor("mb1-ssd-lite", net, engine="eager").predict_batch(images))


def test_unwritable_cache_folder_falls_back_to_eager_with_one_warning(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    net = realistic_net("mb1-ssd-lite")
    images = sample_images(2)
    predictor = create_predictor("mb1-ssd-lite", net, engine="onnxruntime")
    predictor.engine_cache_folder = str(blocker / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [predictor.predict_batch(images) for _ in range(3)]
    engine_warnings = [warning for warning in caught if issubclass(warning.category, EngineWarning)]
    assert len(engine_warnings) == 1, [str(warning.message) for warning in caught]
    assert "eager" in str(engine_warnings[0].message)
    assert predictor.selected_engine() == "eager" and predictor.last_engine_build is None
    expected = create_predictor("mb1-ssd-lite", net, engine="eager").predict_batch(images)
    for result in results:
        assert_same_detections(result, expected)

"""Any input size for every net type: priors from the maps the heads read, the native sizes unchanged."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from tests.conftest import ORIGINAL_NET_TYPES, reference_priors
from vision.ssd.input_size import InputSizeError, measure_feature_map_shapes
from vision.ssd.registry import NET_TYPES, create_net, get_net_type, net_config

SIZES = [None, 320, 512, (640, 360), 1024]
MOBILENET_FAMILY = ["mb1-ssd", "mb1-ssd-lite", "mb2-ssd-lite", "mb3-large-ssd-lite", "mb3-small-ssd-lite"]


def _head_output_count(net, image_size) -> int:
    """Predictions the heads make for one image, counted from their output maps on an empty batch."""
    width, height = image_size
    total = 0
    with torch.no_grad():
        for header, feature_map in zip(net.classification_headers,
                                       net.eval().feature_maps(torch.zeros(0, 3, height, width))):
            output = header(feature_map)
            total += output.shape[1] // net.num_classes * output.shape[2] * output.shape[3]
    return total


@pytest.mark.parametrize("net_type", sorted(NET_TYPES))
def test_prior_count_equals_head_outputs_at_every_size(net_type):
    for size in SIZES:
        net = create_net(net_type, 3, image_size=size)
        assert _head_output_count(net, net.config.image_size) == net.priors.shape[0] == net.config.num_priors, size


@pytest.mark.parametrize("net_type", sorted(NET_TYPES))
def test_forward_at_a_rectangular_size_decodes_one_box_per_prior(net_type):
    net = create_net(net_type, 3, is_test=True, image_size=(400, 288)).eval()
    with torch.no_grad():
        scores, boxes = net(torch.rand(1, 3, 288, 400))
    assert scores.shape == (1, net.priors.shape[0], 3) and boxes.shape == (1, net.priors.shape[0], 4)
    assert net.config.image_size == (400, 288) and net.config.size_text == "400x288"


@pytest.mark.parametrize("net_type, size, expected", [
    ("mb1-ssd", 512, 8190), ("mb1-ssd", (640, 360), 7458), ("vgg16-ssd", 512, 24656), ("sq-ssd-lite", 512, 8214),
    ("vgg16-ssd", 1024, 4 * 128 ** 2 + 6 * (64 ** 2 + 32 ** 2 + 16 ** 2) + 4 * (14 ** 2 + 12 ** 2)),
])
def test_prior_counts_are_those_the_architecture_implies(net_type, size, expected):
    assert create_net(net_type, 21, image_size=size).priors.shape[0] == expected


@pytest.mark.parametrize("net_type", MOBILENET_FAMILY)
@pytest.mark.parametrize("size", SIZES[1:])
def test_mobilenet_maps_halve_from_stride_16(net_type, size):
    # Stride-2 3x3 convolutions with padding 1 give ceil(n / 2): the first head reads stride 16, then 5 halvings.
    width, height = (size, size) if isinstance(size, int) else size
    rows, cols = math.ceil(height / 16), math.ceil(width / 16)
    expected = []
    for _ in range(6):
        expected.append((rows, cols))
        rows, cols = math.ceil(rows / 2), math.ceil(cols / 2)
    config = create_net(net_type, 3, image_size=size).config
    assert config.feature_map_shapes == tuple(expected)
    assert config.num_priors == 6 * sum(r * c for r, c in expected)


@pytest.mark.parametrize("net_type", sorted(NET_TYPES))
def test_priors_lie_in_the_image_at_every_size(net_type):
    for size in SIZES:
        priors = net_config(net_type, size).priors
        assert priors.dtype == torch.float32
        # torchvision's rule (ssd300-vgg16) clamps only sizes; at 300x300 its steps put centres up to 1.0133.
        centre_limit = 1.05 if net_type == "ssd300-vgg16" else 1.0
        assert bool(((priors[:, 2:] >= 0) & (priors[:, 2:] <= 1)).all()), size
        assert bool(((priors[:, :2] >= 0) & (priors[:, :2] <= centre_limit)).all()), size
        assert bool((priors[:, 2:] > 0).all()), size


@pytest.mark.parametrize("net_type", ORIGINAL_NET_TYPES)  # the types with reference priors in tests/data
def test_native_size_priors_equal_the_reference_bit_for_bit(net_type):
    expected = reference_priors(net_type)
    for size in (None, 300, (300, 300)):
        net = create_net(net_type, 21, image_size=size)
        np.testing.assert_array_equal(net.priors.numpy(), expected)
        assert net.config == get_net_type(net_type).config


def test_one_to_one_priors_are_square_in_pixels_on_a_wide_input():
    config = net_config("mb1-ssd", (640, 360))
    priors = config.priors.numpy().astype(np.float64)
    first_map = priors[: 23 * 40 * 6].reshape(23, 40, 6, 4)
    # Unclamped locations away from the border: the min-size and sqrt(min*max) squares.
    inner = first_map[5:-5, 5:-5]
    np.testing.assert_allclose(inner[..., 0, 2] * 640, inner[..., 0, 3] * 360, rtol=1e-5)
    np.testing.assert_allclose(inner[..., 1, 2] * 640, inner[..., 1, 3] * 360, rtol=1e-5)
    # Box sizes scale with the shorter side: the first spec's 60 px at 300 is 72 px at 360.
    np.testing.assert_allclose(inner[..., 0, 3] * 360, 60 * 360 / 300, rtol=1e-5)
    # Centres on the rectangular grid: (j + 0.5) / 40 across, (i + 0.5) / 23 down.
    np.testing.assert_allclose(first_map[0, :, 0, 0], (np.arange(40) + 0.5) / 40, rtol=1e-6)
    np.testing.assert_allclose(first_map[:, 0, 0, 1], (np.arange(23) + 0.5) / 23, rtol=1e-6)
    # An aspect ratio of 2 is 2:1 in pixels.
    np.testing.assert_allclose(inner[..., 2, 2] * 640 / (inner[..., 2, 3] * 360), 2.0, rtol=1e-5)


def test_configuration_is_a_frozen_value_carried_to_another_size():
    native = get_net_type("mb1-ssd-lite").config
    with pytest.raises(dataclasses.FrozenInstanceError):
        native.image_size = (512, 512)
    wide = net_config("mb1-ssd-lite", (640, 360))
    assert wide.image_size == (640, 360) and (wide.width, wide.height) == (640, 360)
    assert (wide.image_mean, wide.image_std, wide.iou_threshold, wide.center_variance, wide.size_variance) == (
        native.image_mean, native.image_std, native.iou_threshold, native.center_variance, native.size_variance)
    assert (wide.match_iou_threshold, wide.neg_pos_ratio) == (0.5, 3)
    assert native.image_size == (300, 300) and native.num_priors == 3000
    assert wide == native.at_size((640, 360), wide.feature_map_shapes) and hash(wide) == hash(
        native.at_size((640, 360), wide.feature_map_shapes))
    # The original's module constants stay as they were.
    from vision.ssd.config import mobilenetv1_ssd_config

    assert mobilenetv1_ssd_config.image_size == 300 and mobilenetv1_ssd_config.priors.shape == (3000, 4)


def test_net_config_is_what_create_net_gives_its_net():
    assert net_config("sq-ssd-lite", (512, 288)) == create_net("sq-ssd-lite", 7, image_size=(512, 288)).config


def test_measurement_keeps_the_modules_train_and_eval_modes():
    net = create_net("mb2-ssd-lite", 3)
    net.train()
    net.base_net[0].eval()
    measure_feature_map_shapes(net, (200, 100))
    assert net.training and not net.base_net[0].training and net.extras[0].training


@pytest.mark.parametrize("net_type, size, smallest", [
    ("vgg16-ssd", 267, 268), ("vgg16-ssd", (640, 200), 268), ("mb1-ssd", 63, 64), ("mb1-ssd-lite", (640, 48), 64),
    ("sq-ssd-lite", 32, 64),
])
def test_too_small_a_size_names_the_smallest_that_works(net_type, size, smallest):
    with pytest.raises(InputSizeError) as raised:
        create_net(net_type, 3, image_size=size)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{net_type}: input size ")
    assert f"the smallest size that works is {smallest} " in message
    create_net(net_type, 3, image_size=smallest)  # and it does work


def test_vgg16_ssd_runs_from_268_pixels():
    net = create_net("vgg16-ssd", 3, image_size=268)
    assert net.config.feature_map_shapes[-1] == (1, 1)

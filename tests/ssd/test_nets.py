"""Every net type against the original toolkit's reference facts."""
import importlib

import numpy as np
import pytest
import torch

from tests.conftest import ORIGINAL_NET_TYPES, reference_config, reference_forward, reference_keys, reference_priors
from vision.ssd.registry import NET_TYPES, create_net, get_net_type
from vision.utils.reference_weights import load_deterministic_weights


@pytest.mark.parametrize("net_type", ORIGINAL_NET_TYPES)
def test_state_dict_names_shapes_and_order_match_reference(net_type):
    reference = reference_keys(net_type)
    net = create_net(net_type, 21)
    ours = [(name, list(tensor.shape)) for name, tensor in net.state_dict().items()]
    theirs = [(name, shape) for name, shape, _ in reference["state_dict"]]
    assert ours == theirs
    assert sum(p.numel() for p in net.parameters()) == reference["num_params"]


@pytest.mark.parametrize("net_type", ORIGINAL_NET_TYPES)
def test_priors_match_reference_in_value_and_order(net_type):
    expected = reference_priors(net_type)
    priors = get_net_type(net_type).config.priors.numpy()
    assert priors.dtype == np.float32
    np.testing.assert_array_equal(priors, expected)


@pytest.mark.parametrize("net_type", ORIGINAL_NET_TYPES)
def test_configuration_matches_reference(net_type):
    expected = reference_config(net_type)
    config = get_net_type(net_type).config
    assert config.image_size == (expected["image_size"], expected["image_size"])
    assert [float(v) for v in config.image_mean] == expected["image_mean"] and config.image_std == expected["image_std"]
    assert (config.iou_threshold, config.center_variance, config.size_variance) == (
        expected["iou_threshold"], expected["center_variance"], expected["size_variance"])
    specs = [(s.feature_map_size, s.shrinkage, s.box_sizes.min, s.box_sizes.max, list(s.aspect_ratios))
             for s in config.specs]
    assert specs == [(s["feature_map_size"], s["shrinkage"], s["box_sizes"]["min"], s["box_sizes"]["max"],
                      s["aspect_ratios"])
                     for s in expected["specs"]]
    assert len(config.priors) == expected["num_priors"]


@pytest.mark.parametrize("net_type", sorted(NET_TYPES))
def test_net_output_count_matches_its_priors(net_type):
    net = create_net(net_type, 21, is_test=True).eval()
    width, height = net.config.image_size
    with torch.no_grad():
        scores, boxes = net(torch.rand(1, 3, height, width))
    num_priors = get_net_type(net_type).config.priors.shape[0]
    assert scores.shape == (1, num_priors, 21) and boxes.shape == (1, num_priors, 4)
    torch.testing.assert_close(scores.sum(dim=2), torch.ones(1, num_priors))


def test_mb1_ssd_reproduces_the_original_forward_pass():
    reference = reference_forward("mb1-ssd")
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(7))
    for is_test, names in ((False, ("confidences", "locations")), (True, ("scores", "boxes"))):
        net = load_deterministic_weights(create_net("mb1-ssd", 21, is_test=is_test)).eval()
        with torch.no_grad():
            outputs = net(x)
        for output, name in zip(outputs, names):
            np.testing.assert_allclose(output.numpy(), reference[name], atol=1e-4, rtol=1e-4, err_msg=name)


def test_is_test_outputs_are_softmax_and_decoded_raw_outputs():
    from vision.utils import box_utils

    raw_net = load_deterministic_weights(create_net("mb2-ssd-lite", 21)).eval()
    test_net = create_net("mb2-ssd-lite", 21, is_test=True).eval()
    test_net.load_state_dict(raw_net.state_dict())
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        confidences, locations = raw_net(x)
        scores, boxes = test_net(x)
    config = get_net_type("mb2-ssd-lite").config
    expected = box_utils.center_form_to_corner_form(
        box_utils.convert_locations_to_boxes(locations, config.priors, config.center_variance, config.size_variance))
    torch.testing.assert_close(scores, torch.softmax(confidences, dim=2))
    torch.testing.assert_close(boxes, expected)


def test_mb2_onnx_compatible_swaps_relu6_where_the_original_does():
    plain = create_net("mb2-ssd-lite", 21)
    onnx = get_net_type("mb2-ssd-lite").create(21, onnx_compatible=True)
    count = lambda net, kind: sum(isinstance(m, kind) for m in net.modules())  # noqa: E731
    assert count(plain, torch.nn.ReLU) == 0
    # base net and regression heads 1..4 switch; extras, classification heads and regression head 0 keep ReLU6
    assert count(onnx, torch.nn.ReLU6) == 4 * 2 + 5 + 1
    assert isinstance(onnx.regression_headers[1][2], torch.nn.ReLU)
    assert isinstance(onnx.regression_headers[0][2], torch.nn.ReLU6)


def test_mb2_width_multiplier_changes_the_base_net():
    net = create_net("mb2-ssd-lite", 21, mb2_width_mult=0.5)
    assert net.base_net[0][0].out_channels == 16
    assert net.classification_headers[0][0].in_channels == round(576 * 0.5)
    with torch.no_grad():
        confidences, _ = net.eval()(torch.rand(1, 3, 300, 300))
    assert confidences.shape == (1, 3000, 21)


ORIGINAL_API = {
    "vision.ssd.vgg_ssd": ["create_vgg_ssd", "create_vgg_ssd_predictor"],
    "vision.ssd.mobilenetv1_ssd": ["create_mobilenetv1_ssd", "create_mobilenetv1_ssd_predictor"],
    "vision.ssd.mobilenetv1_ssd_lite": ["create_mobilenetv1_ssd_lite", "create_mobilenetv1_ssd_lite_predictor"],
    "vision.ssd.mobilenet_v2_ssd_lite": ["create_mobilenetv2_ssd_lite", "create_mobilenetv2_ssd_lite_predictor"],
    "vision.ssd.mobilenetv3_ssd_lite": ["create_mobilenetv3_large_ssd_lite", "create_mobilenetv3_small_ssd_lite",
                                        "create_mobilenetv3_ssd_lite_predictor"],
    "vision.ssd.squeezenet_ssd_lite": ["create_squeezenet_ssd_lite", "create_squeezenet_ssd_lite_predictor"],
    "vision.ssd.ssd": ["SSD", "MatchPrior", "GraphPath"],
    "vision.nn.multibox_loss": ["MultiboxLoss"],
    "vision.utils.box_utils": ["SSDSpec", "SSDBoxSizes", "generate_ssd_priors", "convert_locations_to_boxes",
                               "convert_boxes_to_locations", "center_form_to_corner_form", "corner_form_to_center_form",
                               "area_of", "iou_of", "assign_priors", "hard_negative_mining", "hard_nms", "soft_nms",
                               "nms"],
}


@pytest.mark.parametrize("module_name", sorted(ORIGINAL_API))
def test_original_python_api_is_importable(module_name):
    module = importlib.import_module(module_name)
    for name in ORIGINAL_API[module_name]:
        assert callable(getattr(module, name)), f"{module_name}.{name}"
    for config_name in ("vgg_ssd_config", "mobilenetv1_ssd_config", "squeezenet_ssd_config"):
        config = importlib.import_module(f"vision.ssd.config.{config_name}")
        for attribute in ("image_size", "image_mean", "image_std", "iou_threshold", "center_variance",
                          "size_variance", "specs", "priors"):
            assert hasattr(config, attribute)


def test_original_factory_signatures_build_test_nets():
    from vision.ssd.mobilenet_v2_ssd_lite import create_mobilenetv2_ssd_lite
    from vision.ssd.mobilenetv1_ssd import create_mobilenetv1_ssd

    net = create_mobilenetv1_ssd(5, is_test=True)
    assert net.is_test and net.num_classes == 5
    net = create_mobilenetv2_ssd_lite(5, width_mult=1.0, use_batch_norm=True, onnx_compatible=False, is_test=False)
    assert not net.is_test


def test_unknown_net_type_lists_the_valid_names():
    with pytest.raises(ValueError, match="mb1-ssd-lite"):
        get_net_type("mb4-ssd")

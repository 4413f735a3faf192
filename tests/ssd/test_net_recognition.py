"""Recognising what a state_dict is: every registry net type with its class count, base nets, other
widths, torchvision models; signatures come from the registry's nets, checked here against the
reference key lists in tests/data/keys."""
import pytest
import torch
import torchvision

from tests.conftest import reference_keys
from vision.ssd.net_recognition import mismatch_message, net_signatures, recognise_state_dict
from vision.ssd.registry import create_net

ORIGINAL_NET_TYPES = ["vgg16-ssd", "mb1-ssd", "mb1-ssd-lite", "mb2-ssd-lite", "mb3-large-ssd-lite",
                      "mb3-small-ssd-lite", "sq-ssd-lite"]


@pytest.mark.parametrize("net_type", ORIGINAL_NET_TYPES)
def test_reference_state_dicts_are_recognised_with_their_class_count(net_type):
    reference = reference_keys(net_type)
    shapes = {name: torch.empty(shape, device="meta") for name, shape, _ in reference["state_dict"]}
    found = recognise_state_dict(shapes)
    assert (found.kind, found.net_type, found.num_classes) == ("ssd", net_type, reference["num_classes"])


def test_signatures_come_from_the_registry():
    assert {signature.net_type for signature in net_signatures()} >= set(ORIGINAL_NET_TYPES)


def test_base_nets_other_widths_and_torchvision_models():
    base = create_net("mb1-ssd", 3).base_net.state_dict()
    assert recognise_state_dict(base).net_types == ("mb1-ssd", "mb1-ssd-lite")
    assert (recognise_state_dict(create_net("mb2-ssd-lite", 3, mb2_width_mult=0.5).state_dict()).kind
            == "ssd-other-width")
    with torch.device("meta"):
        classifier = torchvision.models.mobilenet_v2().state_dict()
        detector = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None,
                                                                              weights_backbone=None).state_dict()
    assert recognise_state_dict(classifier).describe().startswith("torchvision's mobilenet_v2 classification weights")
    assert "torchvision's ssdlite320_mobilenet_v3_large detector" in recognise_state_dict(detector).describe()
    assert recognise_state_dict({"weight": torch.zeros(3)}) is None


def test_messages_name_the_file_and_the_flag():
    lite = create_net("mb1-ssd-lite", 9).state_dict()
    assert mismatch_message(lite, "vgg16-ssd", 21, "x.pth") == (
        "x.pth: this checkpoint is a mb1-ssd-lite (9 classes), not a vgg16-ssd; run with --net mb1-ssd-lite")
    same_type = mismatch_message(lite, "mb1-ssd-lite", 21, "x.pth")
    assert (same_type.startswith("x.pth: a mb1-ssd-lite checkpoint for 9 classes")
            and "check the label file" in same_type)

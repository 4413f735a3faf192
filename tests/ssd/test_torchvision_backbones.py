"""torchvision's ImageNet classification state_dicts through --base_net / init_from_base_net: the base
net then computes exactly torchvision's ``features`` (random weights, ``weights=None``: nothing downloads)."""
from __future__ import annotations

import pytest
import torch
import torchvision

from vision.ssd.registry import create_net

torch.set_num_threads(2)


def _run_in_order(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _randomise_batchnorm(model):
    """Non-trivial running statistics, so that a BatchNorm paired with the wrong layer shows."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            module.weight.data.copy_(1 + torch.randn(module.weight.shape, generator=generator) * 0.1)
    return model


def _check_base_net_equals_features(tmp_path, net_type, features, state_dict, count):
    path = tmp_path / "torchvision.pth"
    torch.save(state_dict, path)
    net = create_net(net_type, 5)
    before = {k: v.clone() for k, v in net.base_net.state_dict().items()}
    net.init_from_base_net(str(path))
    net.eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))  # ceil/floor pooling agree here
    with torch.no_grad():
        expected = features[:count](x)
        got = _run_in_order(list(net.base_net)[:count], x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    return before, net.base_net.state_dict()


@pytest.mark.parametrize("net_type, builder", [("mb2-ssd-lite", "mobilenet_v2"), ("sq-ssd-lite", "squeezenet1_1")])
def test_base_net_equals_torchvision_features(tmp_path, net_type, builder):
    torch.manual_seed(0)
    model = _randomise_batchnorm(getattr(torchvision.models, builder)(weights=None)).eval()
    _check_base_net_equals_features(tmp_path, net_type, model.features, model.state_dict(), len(model.features))


def test_vgg16_base_net_equals_features_and_conv6_conv7_are_initialised(tmp_path):
    """vgg16's conv1_1..conv5_3 (``features[:30]``: pool5 onwards differ) fill the base net; conv6/conv7 are
    not in the file and get Xavier weights and zero biases."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # torchvision's vgg16 features (its classifier is slow to build)
    with torch.device("meta"):
        classifier_keys = [k for k in torchvision.models.vgg16(weights=None).state_dict()
                           if k.startswith("classifier.")]
    # The classifier only has to be present (files are recognised by their keys); it is never read.
    state_dict = ({f"features.{k}": v for k, v in features.state_dict().items()}
                  | {k: torch.zeros(1) for k in classifier_keys})
    before, after = _check_base_net_equals_features(tmp_path, "vgg16-ssd", features, state_dict, 30)
    assert torch.equal(after["28.weight"], features[28].weight)
    assert not torch.equal(after["31.weight"], before["31.weight"])  # conv6
    assert torch.equal(after["33.bias"], torch.zeros_like(after["33.bias"]))  # conv7


@pytest.mark.parametrize("net_type", ["mb1-ssd", "mb1-ssd-lite", "mb3-large-ssd-lite", "mb3-small-ssd-lite"])
def test_nets_that_cannot_take_torchvision_weights_point_to_the_new_types(tmp_path, net_type):
    builder = "mobilenet_v3_large" if "mb3" in net_type else "mobilenet_v2"
    path = tmp_path / "tv.pth"
    torch.save(getattr(torchvision.models, builder)(weights=None).state_dict(), path)
    with pytest.raises(ValueError) as raised:
        create_net(net_type, 3).init_from_base_net(str(path))
    message = str(raised.value)
    assert str(path) in message and "ssdlite320-mb3-large" in message and "no MobileNetV1" in message
    assert "\n" not in message


def test_mobilenet_v2_weights_do_not_fit_another_width(tmp_path):
    path = tmp_path / "mb2.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    net = create_net("mb2-ssd-lite", 3, mb2_width_mult=0.5)
    with pytest.raises(ValueError, match="do not fit this net's base net"):
        net.init_from_base_net(str(path))


def test_original_base_net_files_still_load(tmp_path):
    """The original's base-net files (keys of the base net itself) are not mistaken for torchvision's."""
    source = create_net("mb2-ssd-lite", 2)
    path = tmp_path / "mb2-imagenet.pth"
    torch.save(source.base_net.state_dict(), path)
    net = create_net("mb2-ssd-lite", 3)
    net.init_from_base_net(str(path))
    assert torch.equal(net.base_net.state_dict()["0.0.weight"], source.base_net.state_dict()["0.0.weight"])

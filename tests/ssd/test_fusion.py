"""BatchNorm folding for the CPU predictor (vision.ssd.fusion)."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from tests.export.nets import realistic_net
from vision.export.checks import sample_images
from vision.ssd.fusion import FusedNetCache, count_batchnorms, fuse_batchnorm
from vision.ssd.registry import create_predictor


@pytest.mark.parametrize("net_type", ["mb1-ssd", "mb2-ssd-lite", "mb3-small-ssd-lite"])
def test_fused_predictor_equals_the_unfused_one_and_leaves_the_net_alone(net_type):
    net = realistic_net(net_type)
    before = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    module_types = [type(module) for module in net.modules()]
    fused_predictor = create_predictor(net_type, net)
    plain_predictor = create_predictor(net_type, net)
    plain_predictor.fuse_batchnorm = False
    assert fused_predictor.inference_net() is not net and plain_predictor.inference_net() is net
    assert count_batchnorms(net) > 0 and count_batchnorms(fused_predictor.inference_net()) == 0

    batch = fused_predictor.preprocess(sample_images())
    fused_scores, fused_boxes = fused_predictor.forward(batch)
    scores, boxes = plain_predictor.forward(batch)
    # Within 1e-5, or within twice float32's own error where that is larger: the unfused mb2-ssd-lite is
    # already 1.1e-5 from the same net in float64 on these images (17 blocks of rounding), and so is the fused one.
    with torch.no_grad():
        exact_scores, exact_boxes = copy.deepcopy(net).double()(batch.double())
    for fused_output, output, exact in ((fused_scores, scores, exact_scores), (fused_boxes, boxes, exact_boxes)):
        float32_error = (output.double() - exact).abs().max().item()
        assert (fused_output - output).abs().max().item() <= max(1e-5, 2 * float32_error)
        assert (fused_output.double() - exact).abs().max().item() <= max(1e-5, 1.5 * float32_error)
    assert [type(module) for module in net.modules()] == module_types
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_fused_copy_follows_new_weights_and_train_mode():
    net = realistic_net("mb1-ssd-lite")
    predictor = create_predictor("mb1-ssd-lite", net)
    batch = predictor.preprocess(sample_images(1))
    first = predictor.inference_net()
    assert predictor.inference_net() is first  # cached while the net is unchanged
    with torch.no_grad():
        net.base_net[0][1].running_var.mul_(4.0)  # an in-place change bumps the tensor's version
    assert predictor.inference_net() is not first
    predictor.fuse_batchnorm = False
    expected = predictor.forward(batch)
    predictor.fuse_batchnorm = None
    np.testing.assert_allclose(predictor.forward(batch)[0].numpy(), expected[0].numpy(), atol=1e-5)
    net.train()
    assert predictor.inference_net() is net  # batch statistics: nothing to fold
    net.eval()
    net.is_test = False
    assert predictor.inference_net() is net  # only is_test nets are folded automatically


def test_fuse_batchnorm_folds_sequential_pairs_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    model.eval()
    fused = fuse_batchnorm(model)
    assert isinstance(fused[1], nn.Identity) and isinstance(fused[3], nn.BatchNorm2d)
    image = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(fused(image), model(image), atol=1e-5, rtol=1e-5)
    assert isinstance(model[1], nn.BatchNorm2d)
    assert FusedNetCache().get(model) is not model

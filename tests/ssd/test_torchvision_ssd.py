"""ssdlite320-mb3-large and ssd300-vgg16 against torchvision's own models with random weights (never a
download: ``weights=None, weights_backbone=None``): same logits and regressions in the same prior order,
priors equal to its anchors, its BoxCoder decoding, its detections, both ssdlite layouts, fine-tuning."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList

from vision.ssd.registry import create_net, create_predictor
from vision.ssd.torchvision_ssd import convert_torchvision_keys

torch.set_num_threads(2)
NUM_CLASSES = 5
BUILDERS = {"ssdlite320-mb3-large": "ssdlite320_mobilenet_v3_large", "ssd300-vgg16": "ssd300_vgg16"}


def _randomise(model, side):
    """Variance-keeping random weights (torchvision's detection init makes ssdlite's logits ~1e-15), then
    the heads' last convolutions scaled so that logits spread (std 2: no ties at the score cuts) and
    regressions stay moderate (std 0.5)."""
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.01)
        x = model.transform([torch.rand(3, side, side, generator=generator)])[0].tensors  # its normalisation
        outputs = model.head(list(model.backbone(x).values()))
        for head, key, wanted in ((model.head.classification_head, "cls_logits", 2.0),
                                  (model.head.regression_head, "bbox_regression", 0.5)):
            factor = wanted / float(outputs[key].std())
            for entry in head.module_list:
                last = [m for m in entry.modules() if isinstance(m, torch.nn.Conv2d)][-1]
                last.weight.mul_(factor)
                last.bias.mul_(factor)
    return model


@pytest.fixture(scope="module", params=list(BUILDERS))
def pair(request, tmp_path_factory):
    """(net type, torchvision model in eval mode, its state_dict file, our net loaded from that file)."""
    torch.manual_seed(0)
    builder = getattr(torchvision.models.detection, BUILDERS[request.param])
    side = 320 if request.param.startswith("ssdlite") else 300
    model = _randomise(builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES).eval(), side)
    path = tmp_path_factory.mktemp("tv") / f"{request.param}.pth"
    torch.save(model.state_dict(), path)
    net = create_net(request.param, NUM_CLASSES)
    net.load(str(path))
    return request.param, model, path, net.eval()


def _input(net_type, batch=2):
    side = 320 if net_type.startswith("ssdlite") else 300
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(5))


def test_logits_and_regressions_equal_torchvision_heads(pair):
    net_type, model, _, net = pair
    x = _input(net_type) * 2 - 1  # already normalised
    with torch.no_grad():
        expected = model.head(list(model.backbone(x).values()))
        confidences, locations = net(x)
    torch.testing.assert_close(confidences, expected["cls_logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(locations, expected["bbox_regression"], atol=1e-4, rtol=1e-4)


def test_priors_equal_torchvision_anchors(pair):
    net_type, model, _, net = pair
    x = _input(net_type, batch=1)
    height, width = x.shape[-2:]
    with torch.no_grad():
        maps = list(model.backbone(x).values())
    anchors = model.anchor_generator(ImageList(x, [(height, width)]), maps)[0]
    scale = torch.tensor([width, height], dtype=torch.float32)
    centre_form = torch.cat([(anchors[:, :2] + anchors[:, 2:]) / 2 / scale, (anchors[:, 2:] - anchors[:, :2]) / scale],
                            1)
    torch.testing.assert_close(net.priors, centre_form, atol=1e-6, rtol=1e-6)
    if net_type == "ssd300-vgg16":
        assert net.priors[:, 0].max() == pytest.approx(1.0133, abs=1e-4)  # centres past 1, as torchvision's


def test_decoding_equals_box_coder_with_its_clamp(pair):
    net_type, model, _, net = pair
    generator = torch.Generator().manual_seed(2)
    locations = torch.randn(2, net.priors.shape[0], 4, generator=generator) * 3
    locations[0, :50, 2:] = 100.0  # far past the log(1000/16) clamp
    side = float(net.config.image_size[0])
    anchors = torch.cat([net.priors[:, :2] - net.priors[:, 2:] / 2, net.priors[:, :2] + net.priors[:, 2:] / 2],
                        1) * side
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    expected = torch.stack([coder.decode_single(loc, anchors) for loc in locations]) / side
    torch.testing.assert_close(net.decode_boxes(locations), expected, atol=1e-5, rtol=1e-5)


def test_predictor_returns_torchvision_detections(pair):
    net_type, model, _, net = pair
    side = net.config.image_size[0]
    image = (np.random.default_rng(3).random((side, side, 3)) * 255).astype(np.uint8)  # at the net's size
    with torch.no_grad():
        expected = model([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
    predictor = create_predictor(net_type, net)
    boxes, labels, scores = predictor.predict(image)
    defaults = (0.001, 300) if net_type.startswith("ssdlite") else (0.01, 200)
    assert predictor.filter_threshold == defaults[0] and predictor.max_detections == defaults[1]
    assert len(labels) == len(expected["labels"]) > 0

    # As sets: each detection pairs with one of torchvision's of the same label, box and score (scores can
    # tie, so no ordering is used to pair them).
    want_boxes, want_labels, want_scores = expected["boxes"], expected["labels"], expected["scores"]
    distance = (boxes[:, None, :] - want_boxes[None, :, :]).abs().amax(dim=2)  # (K, K) pixels
    distance[labels[:, None] != want_labels[None, :]] = float("inf")
    distance[(scores[:, None] - want_scores[None, :]).abs() > 1e-4] = float("inf")
    partner = distance.argmin(dim=1)
    assert distance.min(dim=1).values.max() < 2e-3
    assert len(set(partner.tolist())) == len(labels)  # one to one


def test_max_detections_caps_every_image(pair):
    net_type, _, _, net = pair
    side = net.config.image_size[0]
    images = [(np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8) for seed in (1, 2)]
    predictor = create_predictor(net_type, net, max_detections=7)
    uncapped = create_predictor(net_type, net, max_detections=0).predict_batch(images)
    for (boxes, labels, scores), (_, _, all_scores) in zip(predictor.predict_batch(images), uncapped):
        assert len(scores) == 7
        assert torch.equal(scores.sort(descending=True).values, all_scores.sort(descending=True).values[:7])


def test_reduced_tail_is_the_default_and_the_full_tail_comes_from_the_imagenet_backbone(tmp_path):
    torch.manual_seed(1)
    backbone = torchvision.models.mobilenet_v3_large(weights=None).eval()
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(backbone.state_dict(), path)
    assert create_net("ssdlite320-mb3-large", 3).base_net[1][-1].out_channels == 480
    net = create_net("ssdlite320-mb3-large", 3)
    net.init_from_base_net(str(path))
    net.eval()
    x = torch.randn(1, 3, 320, 320, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        maps = net.feature_maps(x)
        torch.testing.assert_close(maps[1], backbone.features(x), atol=1e-5, rtol=1e-5)
    assert maps[1].shape[1] == 960
    # The layout travels with the file: a default (reduced) net adopts the full tail on load.
    full = tmp_path / "full.pth"
    torch.save(net.state_dict(), full)
    again = create_net("ssdlite320-mb3-large", 3)
    again.load(str(full))
    again.eval()
    resumed = create_net("ssdlite320-mb3-large", 3)  # --resume: load_state_dict straight away
    resumed.load_state_dict(torch.load(full, weights_only=True))
    resumed.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], net(x)[0])
        torch.testing.assert_close(resumed(x)[0], net(x)[0])


def test_fine_tuning_reinitialises_only_the_classification_head(pair, tmp_path):
    net_type, model, path, _ = pair
    net = create_net(net_type, 3)
    net.init_from_pretrained_ssd(str(path))
    source = convert_torchvision_keys(torch.load(path, weights_only=True))
    own = net.state_dict()
    for key, tensor in source.items():
        if key.startswith("classification_headers."):
            continue
        assert torch.equal(own[key], tensor), key
    last_class_layer = [k for k in own if k.startswith("classification_headers.0.") and k.endswith("weight")][-1]
    assert own[last_class_layer].shape[0] == 3 * net.config.prior_rule.priors_per_location()[0]


def test_loading_another_class_count_names_both(pair):
    net_type, _, path, _ = pair
    with pytest.raises(ValueError, match=f"it has {NUM_CLASSES} classes, this net 3"):
        create_net(net_type, 3).load(str(path))


def test_the_base_net_must_be_the_right_torchvision_backbone(tmp_path):
    path = tmp_path / "mb2.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="takes torchvision's ImageNet mobilenet_v3_large"):
        create_net("ssdlite320-mb3-large", 3).init_from_base_net(str(path))

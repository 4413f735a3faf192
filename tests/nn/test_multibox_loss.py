"""MultiboxLoss: finiteness and gradients on edge-case batches, normalisation by positives."""
import inspect

import torch
import torch.nn.functional as F

from vision.nn.multibox_loss import MultiboxLoss
from vision.ssd.config import mobilenetv1_ssd_config as config


def _loss(**kwargs):
    return MultiboxLoss(config.priors, iou_threshold=0.5, neg_pos_ratio=3, center_variance=0.1, size_variance=0.2,
                        device=torch.device("cpu"), **kwargs)


def _batch(labels):
    generator = torch.Generator().manual_seed(0)
    num_images, num_priors = labels.shape
    confidence = torch.randn(num_images, num_priors, 4, generator=generator, requires_grad=True)
    locations = torch.randn(num_images, num_priors, 4, generator=generator, requires_grad=True)
    gt_locations = torch.randn(num_images, num_priors, 4, generator=generator)
    return confidence, locations, gt_locations


def test_loss_is_finite_and_flows_with_an_image_without_objects():
    labels = torch.zeros(2, 3000, dtype=torch.int64)
    labels[0, [10, 20, 30]] = 2
    confidence, locations, gt_locations = _batch(labels)
    regression, classification = _loss()(confidence, locations, labels, gt_locations)
    (regression + classification).backward()
    assert torch.isfinite(regression) and torch.isfinite(classification) and regression > 0
    assert confidence.grad.abs().sum() > 0 and locations.grad.abs().sum() > 0
    assert confidence.grad[1].abs().sum() == 0  # the original's rule: a background image adds no loss


def test_loss_is_finite_on_a_batch_without_any_object():
    labels = torch.zeros(2, 3000, dtype=torch.int64)
    confidence, locations, gt_locations = _batch(labels)
    regression, classification = _loss()(confidence, locations, labels, gt_locations)
    (regression + classification).backward()
    assert regression.item() == 0 and classification.item() == 0
    regression, classification = _loss(background_negatives=4)(confidence, locations, labels, gt_locations)
    classification.backward()
    assert torch.isfinite(classification) and classification > 0
    assert (confidence.grad.abs().sum(dim=2) > 0).sum(dim=1).tolist() == [4, 4]


def test_loss_matches_hand_computation_on_a_tiny_case():
    labels = torch.zeros(1, 3000, dtype=torch.int64)
    labels[0, 0] = 1
    confidence, locations, gt_locations = _batch(labels)
    regression, classification = _loss()(confidence, locations, labels, gt_locations)
    expected_regression = F.smooth_l1_loss(locations[0, 0], gt_locations[0, 0], reduction="sum")
    torch.testing.assert_close(regression, expected_regression)
    background_loss = -F.log_softmax(confidence[0].detach(), dim=1)[:, 0]
    background_loss[0] = -float("inf")
    negatives = background_loss.topk(3).indices
    chosen = torch.cat([torch.tensor([0]), negatives])
    expected_classification = F.cross_entropy(confidence[0, chosen], labels[0, chosen], reduction="sum")
    torch.testing.assert_close(classification, expected_classification)


# The original's constructor, qfgaohao/pytorch-ssd vision/nn/multibox_loss.py.
ORIGINAL_PARAMETERS = ["priors", "iou_threshold", "neg_pos_ratio", "center_variance", "size_variance", "device"]


def test_constructor_takes_the_original_arguments_in_the_original_order():
    parameters = list(inspect.signature(MultiboxLoss.__init__).parameters)[1:]
    assert parameters[:len(ORIGINAL_PARAMETERS)] == ORIGINAL_PARAMETERS
    positional = MultiboxLoss(config.priors, 0.5, 3, 0.1, 0.2, torch.device("cpu"))
    keywords = MultiboxLoss(priors=config.priors, iou_threshold=0.5, neg_pos_ratio=3, center_variance=0.1,
                            size_variance=0.2, device=torch.device("cpu"))
    assert (positional.iou_threshold, positional.neg_pos_ratio, positional.center_variance, positional.size_variance) \
        == (keywords.iou_threshold, keywords.neg_pos_ratio, keywords.center_variance, keywords.size_variance) \
        == (0.5, 3, 0.1, 0.2)


def test_only_neg_pos_ratio_of_the_original_arguments_changes_the_loss():
    labels = torch.zeros(2, 3000, dtype=torch.int64)
    labels[0, [10, 20, 30]] = 2
    labels[1, 40] = 1
    confidence, locations, gt_locations = _batch(labels)
    reference = _loss()(confidence, locations, labels, gt_locations)
    ignored = MultiboxLoss(torch.zeros(3000, 4), iou_threshold=0.9, neg_pos_ratio=3, center_variance=0.5,
                           size_variance=0.7, device=torch.device("cpu"))(confidence, locations, labels, gt_locations)
    torch.testing.assert_close(ignored, reference)
    mined_more = MultiboxLoss(config.priors, iou_threshold=0.5, neg_pos_ratio=6, center_variance=0.1,
                              size_variance=0.2, device=torch.device("cpu"))(confidence, locations, labels,
                                                                             gt_locations)
    assert mined_more[1] > reference[1]
    torch.testing.assert_close(mined_more[0], reference[0])

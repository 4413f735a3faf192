"""Box coding, IoU and ground-truth matching on hand-computed cases."""
import math

import numpy as np
import torch

from vision.ssd.config import mobilenetv1_ssd_config as config
from vision.ssd.ssd import MatchPrior
from vision.utils import box_utils


def test_generate_priors_order_within_one_location():
    specs = [box_utils.SSDSpec(2, 150, box_utils.SSDBoxSizes(100, 200), [2])]
    priors = box_utils.generate_ssd_priors(specs, 300, clamp=False)
    assert priors.shape == (2 * 2 * 4, 4)
    # first location (row 0, col 0): centre (0.25, 0.25); then row 0 col 1 -> cx 0.75
    small, big, root = 100 / 300, math.sqrt(100 * 200) / 300, math.sqrt(2)
    expected_first = torch.tensor([[0.25, 0.25, small, small], [0.25, 0.25, big, big],
                                   [0.25, 0.25, small * root, small / root], [0.25, 0.25, small / root, small * root]])
    torch.testing.assert_close(priors[:4], expected_first)
    assert priors[4, 0].item() == 0.75 and priors[4, 1].item() == 0.25


def test_center_corner_round_trip():
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    center = box_utils.corner_form_to_center_form(boxes)
    torch.testing.assert_close(center[0], torch.tensor([0.3, 0.55, 0.4, 0.7]))
    torch.testing.assert_close(box_utils.center_form_to_corner_form(center), boxes)


def test_encode_decode_round_trip_with_variances():
    priors = config.priors
    generator = torch.Generator().manual_seed(0)
    centers = torch.rand(len(priors), 2, generator=generator)
    sizes = torch.rand(len(priors), 2, generator=generator) * 0.5 + 0.01
    boxes = torch.cat([centers, sizes], dim=1)
    locations = box_utils.convert_boxes_to_locations(boxes, priors, 0.1, 0.2)
    decoded = box_utils.convert_locations_to_boxes(locations, priors, 0.1, 0.2)
    torch.testing.assert_close(decoded, boxes, atol=1e-5, rtol=1e-5)
    # a box equal to its prior encodes to zeros
    torch.testing.assert_close(box_utils.convert_boxes_to_locations(priors, priors, 0.1, 0.2), torch.zeros_like(priors))


def test_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    iou = box_utils.iou_of(a, b)
    torch.testing.assert_close(iou, torch.tensor([1 / (4 + 4 - 1 + 1e-5), 0.0, 4 / (4 + 1e-5)]))


def _priors(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_assign_priors_threshold_and_background():
    corner_priors = _priors([0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.4, 0.5])
    gt = _priors([0.0, 0.0, 0.5, 0.5])
    boxes, labels = box_utils.assign_priors(gt, torch.tensor([3]), corner_priors, 0.5)
    # prior 0 is the best (IoU 1); prior 2 has IoU 0.8 > 0.5; prior 1 does not overlap -> background
    assert labels.tolist() == [3, 0, 3]
    torch.testing.assert_close(boxes[2], gt[0])


def test_ground_truth_overlapping_no_prior_above_threshold_still_gets_its_best_prior():
    corner_priors = _priors([0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0])
    tiny = _priors([0.6, 0.6, 0.7, 0.7])  # IoU with prior 1 is 0.04
    _, labels = box_utils.assign_priors(tiny, torch.tensor([2]), corner_priors, 0.5)
    assert labels.tolist() == [0, 2]


def test_two_boxes_sharing_a_best_prior_the_later_box_wins():
    corner_priors = _priors([0.0, 0.0, 1.0, 1.0], [0.9, 0.9, 1.0, 1.0])
    gt = _priors([0.0, 0.0, 0.6, 0.6], [0.0, 0.0, 0.7, 0.7])  # both best match prior 0
    boxes, labels = box_utils.assign_priors(gt, torch.tensor([1, 2]), corner_priors, 0.5)
    assert labels[0].item() == 2
    torch.testing.assert_close(boxes[0], gt[1])


def test_match_prior_without_objects_gives_background_and_zero_locations():
    match = MatchPrior(config.priors, config.center_variance, config.size_variance, 0.5)
    locations, labels = match(np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))
    assert labels.shape == (3000,) and int(labels.sum()) == 0
    assert torch.isfinite(locations).all() and float(locations.abs().max()) < 1e-5


def test_match_prior_encodes_the_matched_box():
    match = MatchPrior(config.priors, config.center_variance, config.size_variance, 0.5)
    gt = np.array([[0.2, 0.2, 0.6, 0.7]], np.float32)
    locations, labels = match(gt, np.array([4]))
    positives = labels == 4
    assert positives.sum() >= 1
    decoded = box_utils.convert_locations_to_boxes(locations, config.priors, 0.1, 0.2)
    corner = box_utils.center_form_to_corner_form(decoded)[positives]
    torch.testing.assert_close(corner, torch.from_numpy(gt).expand_as(corner), atol=1e-5, rtol=1e-5)


def test_hard_negative_mining_keeps_three_negatives_per_positive_per_image():
    loss = torch.rand(2, 100, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(2, 100, dtype=torch.int64)
    labels[0, [5, 17]] = 1  # two positives in image 0, four in image 1
    labels[1, [1, 2, 3, 4]] = 2
    mask = box_utils.hard_negative_mining(loss.clone(), labels, 3)
    negatives = mask & (labels == 0)
    assert negatives[0].sum() == 6 and negatives[1].sum() == 12
    # they are the highest-loss negatives of their image
    for image in range(2):
        neg_losses = loss[image][labels[image] == 0]
        chosen = loss[image][negatives[image]]
        assert chosen.min() >= neg_losses.sort(descending=True).values[len(chosen) - 1]
    assert (mask[labels > 0]).all()


def test_hard_negative_mining_minimum_negatives_for_background_images():
    loss = torch.rand(2, 50)
    labels = torch.zeros(2, 50, dtype=torch.int64)
    labels[0, 0] = 1
    assert box_utils.hard_negative_mining(loss.clone(), labels, 3)[1].sum() == 0
    mask = box_utils.hard_negative_mining(loss.clone(), labels, 3, min_negatives=5)
    assert mask[1].sum() == 5 and (mask[0] & (labels[0] == 0)).sum() == 5


def test_hard_nms_suppresses_overlaps_and_respects_top_k_and_candidates():
    box_scores = torch.tensor([[0, 0, 10, 10, 0.9], [0, 0, 10, 9, 0.8], [20, 20, 30, 30, 0.7], [40, 40, 50, 50, 0.6]])
    kept = box_utils.hard_nms(box_scores, 0.45)
    assert kept[:, 4].tolist() == [0.8999999761581421, 0.699999988079071, 0.6000000238418579]
    assert len(box_utils.hard_nms(box_scores, 0.45, top_k=2)) == 2
    assert len(box_utils.hard_nms(box_scores, 0.45, candidate_size=2)) == 1


def test_soft_nms_decays_overlapping_scores():
    box_scores = torch.tensor([[0, 0, 10, 10, 0.9], [0, 0, 10, 9, 0.8], [20, 20, 30, 30, 0.7]])
    kept = box_utils.nms(box_scores.clone(), "soft", score_threshold=0.01, sigma=0.5)
    assert len(kept) == 3
    iou = box_utils.iou_of(box_scores[0, :4], box_scores[1, :4])
    decayed = 0.8 * math.exp(-(iou.item() ** 2) / 0.5)
    assert kept[0, 4].item() == box_scores[0, 4].item()
    assert abs(kept[2, 4].item() - decayed) < 1e-6  # picked after the untouched 0.7 box

"""Batched prior matching equals the per-image MatchPrior bit for bit."""
import numpy as np
import pytest
import torch

from vision.ssd.registry import net_config
from vision.ssd.ssd import MatchPrior
from vision.training.batched_matching import BatchedMatchPrior, assign_priors_batched, pad_ground_truth
from vision.utils import box_utils

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def config():
    return net_config("mb1-ssd-lite", None)


def random_boxes(rng, count):
    corners = np.sort(rng.uniform(0, 1, size=(count, 2, 2)), axis=1)  # (n, [min, max], [x, y])
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], axis=1)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1e-3)
    return boxes.astype(np.float32)


def per_image_and_batched(config, boxes, labels):
    single = MatchPrior(config.priors, config.center_variance, config.size_variance, config.match_iou_threshold)
    expected = [single(b, image_labels) for b, image_labels in zip(boxes, labels)]
    batched = BatchedMatchPrior.from_config(config)
    locations, matched_labels = batched(*pad_ground_truth(boxes, labels))
    return expected, locations, matched_labels


def assert_equal_per_image(expected, locations, labels):
    for index, (expected_locations, expected_labels) in enumerate(expected):
        assert torch.equal(labels[index], expected_labels), f"labels of image {index}"
        assert torch.equal(locations[index], expected_locations), f"locations of image {index}"


def test_random_batches_equal_per_image_matching(config):
    rng = np.random.default_rng(0)
    counts = [0, 1, 3, 7, 2, 0, 12, 5]
    boxes = [random_boxes(rng, n) for n in counts]
    labels = [rng.integers(1, 21, size=n) for n in counts]
    expected, locations, matched = per_image_and_batched(config, boxes, labels)
    assert locations.shape == (len(counts), config.num_priors, 4)
    assert (matched[0] == 0).all() and (matched[5] == 0).all()
    assert (matched[6] > 0).any()
    assert_equal_per_image(expected, locations, matched)


def test_shared_best_prior_goes_to_the_later_box(config):
    corner_priors = box_utils.center_form_to_corner_form(config.priors)
    prior = corner_priors[100].numpy()
    # Two nearly identical boxes whose best prior is the same; the later one must win it.
    boxes = np.stack([prior + [0.001, 0.001, 0.0, 0.0], prior + [0.0, 0.0, -0.001, -0.001]]).astype(np.float32)
    labels = np.array([3, 7])
    gt = torch.from_numpy(boxes)
    ious = box_utils.iou_of(gt.unsqueeze(0), corner_priors.unsqueeze(1))
    assert ious.argmax(0)[0] == ious.argmax(0)[1] == 100
    expected, locations, matched = per_image_and_batched(config, [boxes, boxes[:1], boxes[::-1].copy()],
                                                         [labels, labels[:1], labels[::-1].copy()])
    assert matched[0, 100] == 7 and matched[2, 100] == 3 and matched[1, 100] == 3
    assert_equal_per_image(expected, locations, matched)


def test_padding_never_wins_and_an_image_without_boxes_is_background(config):
    boxes = [np.zeros((0, 4), np.float32), np.array([[0.1, 0.1, 0.5, 0.6]], np.float32)]
    labels = [np.zeros(0, np.int64), np.array([2])]
    gt_boxes, gt_labels, gt_mask = pad_ground_truth(boxes, labels)
    assert gt_mask.tolist() == [[False], [True]]
    # Padding that looks like a real box with a real label must still be ignored.
    gt_boxes[0, 0] = torch.tensor([0.1, 0.1, 0.5, 0.6])
    gt_labels[0, 0] = 5
    corner_priors = box_utils.center_form_to_corner_form(config.priors)
    matched_boxes, matched = assign_priors_batched(gt_boxes, gt_labels, gt_mask, corner_priors, 0.5)
    assert (matched[0] == 0).all()
    assert torch.equal(matched_boxes[0], corner_priors)
    expected_boxes, expected_labels = box_utils.assign_priors(torch.from_numpy(boxes[1]), torch.tensor([2]),
                                                              corner_priors, 0.5)
    assert torch.equal(matched[1], expected_labels) and torch.equal(matched_boxes[1], expected_boxes)


def test_threshold_comes_from_the_configuration(config):
    rng = np.random.default_rng(1)
    boxes = [random_boxes(rng, 4)]
    labels = [np.array([1, 2, 3, 4])]
    gt = pad_ground_truth(boxes, labels)
    loose = BatchedMatchPrior(config.priors, config.center_variance, config.size_variance, 0.2)(*gt)[1]
    strict = BatchedMatchPrior(config.priors, config.center_variance, config.size_variance, 0.7)(*gt)[1]
    assert (loose > 0).sum() > (strict > 0).sum() >= 4

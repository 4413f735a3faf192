"""vision.ssd.coverage: the share of boxes with a prior at IoU >= the match threshold, measured the way
training matches, equals a brute-force loop over every box and prior (centres included, at the threshold
exactly, on rectangular inputs), and the grid shortcut gives the same best IoUs as comparing every prior."""
import itertools

import numpy as np
import pytest
import torch

from vision.ssd.coverage import COVERED_SHARE, PriorGrid, best_prior_ious, prior_coverage
from vision.ssd.priors import TablePriors
from vision.ssd.registry import net_config
from vision.ssd.ssd import MatchPrior
from vision.utils.box_utils import center_form_to_corner_form, iou_of


def _brute_force_best(boxes, priors):
    """Training's IoU (1e-5 in the union), one box and one prior at a time, in float64."""
    best = []
    for x1, y1, x2, y2 in boxes:
        values = []
        for cx, cy, w, h in priors.tolist():
            px1, py1, px2, py2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            inter = max(0.0, min(x2, px2) - max(x1, px1)) * max(0.0, min(y2, py2) - max(y1, py1))
            values.append(inter / ((x2 - x1) * (y2 - y1) + w * h - inter + 1e-5))
        best.append(max(values))
    return np.array(best)


def _random_boxes(count, seed, smallest=0.02):
    rng = np.random.default_rng(seed)
    size = rng.uniform(smallest, 0.8, (count, 2))
    centre = rng.uniform(size / 2, 1 - size / 2)
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


@pytest.mark.parametrize("net_type, size", [("mb1-ssd", None), ("mb2-ssd-lite", (512, 288)),
                                            ("vgg16-ssd", (320, 480)), ("ssd300-vgg16", None)])
def test_best_ious_equal_a_brute_force_loop(net_type, size):
    config = net_config(net_type, size)
    boxes = _random_boxes(60, seed=1)
    expected = _brute_force_best(boxes, config.priors)
    np.testing.assert_allclose(best_prior_ious(boxes, config.priors).numpy(), expected, atol=2e-6)
    grid = PriorGrid.from_priors(config.priors, config.feature_map_shapes, config.prior_rule.priors_per_location())
    assert grid is not None
    np.testing.assert_allclose(best_prior_ious(boxes, config.priors, grid).numpy(), expected, atol=2e-6)


def test_the_grid_compares_few_priors_but_finds_the_same_best_on_many_boxes():
    config = net_config("mb1-ssd-lite", (400, 256))
    grid = PriorGrid.from_priors(config.priors, config.feature_map_shapes, config.prior_rule.priors_per_location())
    boxes = _random_boxes(3000, seed=2, smallest=0.005)
    full = best_prior_ious(boxes, config.priors).numpy()
    fast = best_prior_ious(boxes, config.priors, grid).numpy()
    np.testing.assert_allclose(fast, full, atol=1e-6)
    assert grid.candidate_indexes(boxes).shape == (3000, 4 * sum(config.prior_rule.priors_per_location()))


def test_a_box_exactly_at_the_threshold_counts_as_matching_would_make_it_positive():
    # Two priors on a 1x2 map; the box overlaps the left one (forced on it) and the right one at some IoU t.
    table = TablePriors((((0.5, 1.0),),))
    priors = table.priors((200, 100), ((1, 2),))
    box = np.array([[0.1, 0.0, 0.6, 1.0]])
    corner = center_form_to_corner_form(priors)
    ious = iou_of(torch.tensor(box, dtype=torch.float32), corner)  # training's values, float32
    right = float(ious[1])
    assert 0 < right < float(ious[0])
    for threshold, covered_right in ((right, True), (float(np.nextafter(np.float32(right), np.float32(1))), False)):
        # Matching: the right prior is a positive exactly when its IoU is at least the threshold.
        _, labels = MatchPrior(priors, 0.1, 0.2, threshold)(torch.tensor(box, dtype=torch.float32), torch.tensor([1]))
        assert labels.tolist() == [1, 1 if covered_right else 0]
    # Coverage asks whether the best prior reaches the threshold: the left one here, at its IoU exactly.
    best = float(best_prior_ious(box, priors)[0])
    assert best == float(ious[0])
    names = ["BACKGROUND", "a"]
    assert prior_coverage(box, np.array([1]), names, priors, best).covered["a"] == 1.0
    above = float(np.nextafter(np.float32(best), np.float32(1)))
    assert prior_coverage(box, np.array([1]), names, priors, above).covered["a"] == 0.0


def test_the_share_and_median_per_class_on_a_crafted_grid():
    # A 2x4 map (rows x cols) of one prior 0.25 x 0.5 per cell, on a rectangular input.
    table = TablePriors((((0.25, 0.5),),))
    shapes = ((2, 4),)
    priors = table.priors((640, 320), shapes)
    assert torch.allclose(priors[:4, :2], torch.tensor([[0.125, 0.25], [0.375, 0.25], [0.625, 0.25], [0.875, 0.25]]))
    centred = [[0.0, 0.0, 0.25, 0.5], [0.5, 0.5, 0.75, 1.0]]  # exactly on a prior: IoU ~1
    shifted = [[0.0625, 0.0, 0.3125, 0.5]]  # a quarter cell off: IoU 0.6
    tiny = [[0.0, 0.0, 0.05, 0.05], [0.3, 0.3, 0.32, 0.32]]  # IoU 0.02 and 0.0032
    boxes = np.array(centred + shifted + tiny)
    labels = np.array([1, 1, 1, 2, 2])
    coverage = prior_coverage(boxes, labels, ["BACKGROUND", "big", "tiny"], priors, 0.5,
                              feature_map_shapes=shapes, priors_per_location=(1,))
    assert coverage.boxes == {"big": 3, "tiny": 2}
    assert coverage.covered == {"big": 1.0, "tiny": 0.0}
    assert coverage.median_best_iou["big"] == pytest.approx(1.0, abs=1e-3)
    assert coverage.median_best_iou["tiny"] == pytest.approx((0.0025 / 0.125 + 0.0004 / 0.125) / 2, rel=1e-2)
    assert coverage.poorly_covered() == ["tiny"] and coverage.lowest() == 0.0
    brute = _brute_force_best(boxes, priors)
    assert brute[2] == pytest.approx(0.6, abs=1e-4)


def test_a_class_without_boxes_is_reported_as_such_not_as_uncovered():
    priors = net_config("mb1-ssd").priors
    coverage = prior_coverage(np.array([[0.1, 0.1, 0.6, 0.6]]), np.array([1]), ["BACKGROUND", "a", "b"], priors)
    assert coverage.boxes == {"a": 1, "b": 0} and coverage.poorly_covered() == []
    assert "  b " in "\n".join(coverage.lines()) and coverage.to_document()["prior_coverage"]["b"] is None
    assert coverage.lowest() >= COVERED_SHARE or coverage.covered["a"] < COVERED_SHARE


def test_priors_that_are_not_a_grid_fall_back_to_every_prior():
    priors = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.3, 0.2, 0.2], [0.1, 0.9, 0.2, 0.1], [0.5, 0.5, 0.3, 0.3]])
    assert PriorGrid.from_priors(priors, ((2, 2),), (1,)) is None
    boxes = np.array(list(itertools.islice(_random_boxes(10, seed=4), 10)))
    coverage = prior_coverage(boxes, np.ones(10, np.int64), ["BACKGROUND", "a"], priors, 0.3,
                              feature_map_shapes=((2, 2),), priors_per_location=(1,))
    assert coverage.covered["a"] == pytest.approx(float((_brute_force_best(boxes, priors) >= 0.3).mean()))

"""The recipe as sampled parameters: same draws and boxes as TrainAugmentation, the crop law and its IoU bounds
over 10,000 draws, and the one-pass CPU geometry within interpolation of the step-by-step recipe."""
import numpy as np
import pytest

from vision.datasets.synthetic import render_image
from vision.transforms import TrainAugmentation
from vision.transforms.augmentation import Expand, PhotometricDistort, RandomIoUCrop
from vision.transforms.box_ops import iou_matrix
from vision.transforms.one_pass import OnePassTrainAugmentation, sample_parameters

MEAN, STD, SIZE = (127, 127, 127), 128.0, (300, 300)


@pytest.fixture(scope="module")
def photo():
    image, objects = render_image((0, 1), 200, 150, 3)
    return image, np.array([o.box for o in objects], np.float32), np.arange(1, len(objects) + 1)


def without_colour(recipe):
    for step in recipe.steps:
        if isinstance(step, PhotometricDistort):
            step.p = 0.0
    return recipe


def test_same_seed_gives_the_recipes_boxes_exactly(photo):
    image, boxes, labels = photo
    recipe = TrainAugmentation(SIZE, MEAN, STD)
    height, width = image.shape[:2]
    flips = crops = 0
    for seed in range(60):
        np.random.seed(seed)
        _, expected_boxes, expected_labels = recipe(image, boxes, labels)
        np.random.seed(seed)
        parameters = sample_parameters(recipe, width, height, boxes, labels)
        np.testing.assert_array_equal(parameters.boxes, expected_boxes)
        np.testing.assert_array_equal(parameters.labels, expected_labels)
        flips += parameters.flip
        crops += not np.array_equal(parameters.window, [0, 0, width, height])
    assert 10 < flips < 50 and crops > 20


def test_one_pass_images_are_within_two_gray_levels_of_the_recipe(photo):
    image, boxes, labels = photo
    recipe = without_colour(TrainAugmentation(SIZE, MEAN, STD))
    one_pass = OnePassTrainAugmentation(SIZE, MEAN, STD)
    one_pass.recipe = recipe
    for seed in range(30):
        np.random.seed(seed)
        expected, expected_boxes, _ = recipe(image, boxes, labels)
        np.random.seed(seed)
        actual, actual_boxes, _ = one_pass(image, boxes, labels)
        np.testing.assert_array_equal(actual_boxes, expected_boxes)
        assert actual.shape == expected.shape == (3, 300, 300)
        assert float((actual - expected).abs().mean()) * STD < 2.0, seed


def test_one_pass_with_colour_stays_close_and_fills_the_zoom_out_with_the_mean(photo):
    image, boxes, labels = photo
    recipe = TrainAugmentation(SIZE, MEAN, STD)
    one_pass = OnePassTrainAugmentation(SIZE, MEAN, STD)
    one_pass.recipe = recipe
    zoomed_out = 0
    for seed in range(30):
        np.random.seed(seed)
        expected, _, _ = recipe(image, boxes, labels)
        np.random.seed(seed)
        actual, _, _ = one_pass(image, boxes, labels)
        assert float((actual - expected).abs().mean()) * STD < 2.0, seed
        if float(expected[:, 0, 0].abs().max()) == 0.0:  # the corner is fill in the recipe's output
            zoomed_out += 1
            assert float(actual[:, 0, 0].abs().max()) == 0.0
    assert zoomed_out > 0


class _Recorder:
    """Wraps RandomIoUCrop.sample_crop to record (min_iou, crop or None) of every call."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = RandomIoUCrop.sample_crop

        def recording(step, width, height, boxes, min_iou):
            result = original(step, width, height, boxes, min_iou)
            self.calls.append((min_iou, result))
            return result
        monkeypatch.setattr(RandomIoUCrop, "sample_crop", recording)


def _option_counts(calls, options):
    return np.array([sum(1 for min_iou, _ in calls if min_iou == option) for option in options], dtype=np.float64)


def test_crop_options_and_iou_bounds_match_the_recipe_over_10000_draws(monkeypatch):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    boxes = np.array([[4, 4, 20, 18], [18, 10, 38, 28]], np.float32)
    labels = np.array([1, 2])
    recipe = TrainAugmentation((20, 20), MEAN, STD)
    for step in recipe.steps:
        if isinstance(step, Expand):
            step.p = 0.0  # crops then lie in the photo's own pixels, so windows are comparable
    crop_step = next(step for step in recipe.steps if isinstance(step, RandomIoUCrop))
    recorder = _Recorder(monkeypatch)
    np.random.seed(1)
    none_recipe = 0
    for _ in range(10000):
        state = len(recorder.calls)
        crop_step(image, boxes, labels)
        none_recipe += len(recorder.calls) == state or recorder.calls[-1][1] is None  # whole image kept
    recipe_calls = recorder.calls
    recorder.calls = []
    np.random.seed(2)
    windows = []
    for _ in range(10000):
        windows.append(sample_parameters(recipe, 40, 30, boxes, labels).window)
    sampler_calls = recorder.calls
    windows = np.array(windows)
    whole = np.all(windows == [0, 0, 40, 30], axis=1)
    # Option probabilities: each of the five IoU options is asked equally often on both paths (chi-square-like
    # bound on the difference of the shares), and "keep the whole image" as often.
    options = [0.1, 0.3, 0.7, 0.9, 0.0]
    recipe_share = _option_counts(recipe_calls, options) / len(recipe_calls)
    sampler_share = _option_counts(sampler_calls, options) / len(sampler_calls)
    np.testing.assert_allclose(recipe_share, sampler_share, atol=0.02)
    assert abs(none_recipe / 10000 - whole.mean()) < 0.025
    # Every crop the sampler took meets the IoU bound it was drawn for, with an object whose centre it holds.
    accepted = [(min_iou, result) for min_iou, result in sampler_calls if result is not None]
    assert len(accepted) == (~whole).sum()
    for (min_iou, (crop, keep)), window in zip(accepted, windows[~whole]):
        np.testing.assert_array_equal([crop[0], crop[1], crop[2] - crop[0], crop[3] - crop[1]], window)
        assert keep.any() or min_iou <= 0.0
        if keep.any():
            assert iou_matrix(crop[None].astype(np.float64), boxes[keep].astype(np.float64)).max() >= min_iou - 1e-9
    # The crop sizes follow the same law: mean relative area and aspect within a few standard errors.
    recipe_crops = np.array([crop for _, result in recipe_calls if result is not None for crop in [result[0]]])
    recipe_area = ((recipe_crops[:, 2] - recipe_crops[:, 0]) * (recipe_crops[:, 3] - recipe_crops[:, 1])) / 1200
    sampler_area = windows[~whole, 2] * windows[~whole, 3] / 1200
    assert abs(recipe_area.mean() - sampler_area.mean()) < 4 * np.hypot(
        recipe_area.std() / np.sqrt(len(recipe_area)), sampler_area.std() / np.sqrt(len(sampler_area)))

"""The individual SSD augmentation steps: boxes follow the pixels, the crop's IoU bound holds."""
import numpy as np
import pytest

from vision.transforms.augmentation import (
    Expand,
    PhotometricDistort,
    RandomHorizontalFlip,
    RandomIoUCrop,
    SanitizeBoxes,
)
from vision.transforms.box_ops import iou_matrix

EMPTY_BOXES, EMPTY_LABELS = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)


def marked_image(width=120, height=90, box=(30, 20, 70, 50), value=255):
    image = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = value
    return image, np.array([box], np.float32), np.array([7])


def assert_box_covers_marked_pixels(image, box, value=255):
    ys, xs = np.nonzero((image == value).all(axis=2))
    np.testing.assert_array_equal([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box)


def test_expand_moves_boxes_with_the_image_and_fills_with_the_mean():
    np.random.seed(1)
    image, boxes, labels = marked_image()
    expand = Expand(fill_rgb=[123, 117, 104], p=1.0)
    for _ in range(5):
        canvas, moved, kept = expand(image, boxes, labels)
        assert canvas.shape[0] >= 90 and canvas.shape[1] >= 120 and kept.tolist() == [7]
        assert_box_covers_marked_pixels(canvas, moved[0])
        assert canvas[0, 0].tolist() == [123, 117, 104] or canvas[-1, -1].tolist() == [123, 117, 104]
    np.testing.assert_array_equal(boxes, [[30, 20, 70, 50]])  # input untouched


def test_flip_mirrors_boxes_with_the_image():
    image, boxes, labels = marked_image()
    flipped, moved, _ = RandomHorizontalFlip(p=1.0)(image, boxes, labels)
    assert_box_covers_marked_pixels(flipped, moved[0])
    np.testing.assert_array_equal(moved, [[50, 20, 90, 50]])


def test_photometric_distort_changes_pixels_only():
    np.random.seed(0)
    image = np.random.randint(0, 256, (40, 60, 3)).astype(np.uint8)
    boxes = np.array([[1, 2, 30, 20]], np.float32)
    changed = False
    for _ in range(10):
        out, out_boxes, out_labels = PhotometricDistort()(image, boxes, np.array([3]))
        assert out.shape == image.shape and out.dtype == np.uint8
        assert out_boxes is boxes and out_labels.tolist() == [3]
        changed |= not np.array_equal(out, image)
    assert changed
    same, _, _ = PhotometricDistort(p=0.0)(image, boxes, np.array([3]))
    np.testing.assert_array_equal(same, image)


@pytest.mark.parametrize("min_iou", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_sampled_crop_meets_its_iou_bound_with_a_kept_object(min_iou):
    np.random.seed(int(min_iou * 10))
    crop = RandomIoUCrop()
    boxes = np.array([[10, 10, 60, 80], [15, 12, 185, 140], [150, 10, 170, 25]], np.float32)
    found = 0
    for _ in range(40):
        result = crop.sample_crop(200, 150, boxes, min_iou)
        if result is None:
            continue
        found += 1
        (left, top, right, bottom), keep = result
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (left < centres[:, 0]) & (centres[:, 0] < right) & (top < centres[:, 1]) & (centres[:, 1] < bottom)
        np.testing.assert_array_equal(keep, inside)
        ious = iou_matrix(np.array([[left, top, right, bottom]], np.float64), boxes.astype(np.float64))[0]
        assert ious[keep].max() >= min_iou
        assert 0.5 <= (bottom - top) / (right - left) <= 2.0
        assert 0 <= left < right <= 200 and 0 <= top < bottom <= 150
    assert found > 0


def test_crop_keeps_objects_by_centre_clips_them_and_keeps_labels_in_step():
    np.random.seed(3)
    crop = RandomIoUCrop(sample_options=(0.0,))
    image = np.zeros((150, 200, 3), np.uint8)
    boxes = np.array([[10, 10, 60, 80], [100, 30, 190, 140], [150, 10, 170, 25], [0, 100, 30, 150]], np.float32)
    labels = np.array([1, 2, 3, 4])
    for _ in range(30):
        cropped, out_boxes, out_labels = crop(image, boxes, labels)
        height, width = cropped.shape[:2]
        assert len(out_boxes) == len(out_labels) >= 1
        assert (out_boxes[:, :2] >= 0).all() and (out_boxes[:, 2] <= width).all() and (out_boxes[:, 3] <= height).all()
        assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all()
        # Each kept box is its original clipped to the crop, so its size can only shrink.
        for box, label in zip(out_boxes, out_labels):
            original = boxes[label - 1]
            assert box[2] - box[0] <= original[2] - original[0] + 1e-4


def test_crop_of_an_image_without_boxes_still_crops():
    np.random.seed(0)
    image = np.zeros((150, 200, 3), np.uint8)
    shapes = {crop_result[0].shape for crop_result in
              (RandomIoUCrop(sample_options=(0.5,))(image, EMPTY_BOXES, EMPTY_LABELS) for _ in range(5))}
    assert any(shape != image.shape for shape in shapes)


def test_crop_that_cannot_meet_its_bound_returns_the_image_unchanged():
    np.random.seed(0)
    image = np.zeros((100, 100, 3), np.uint8)
    tiny = np.array([[10, 10, 12, 12]], np.float32)  # IoU with any crop of >= 30x30 is < 0.01
    out, out_boxes, _ = RandomIoUCrop(sample_options=(0.9,), max_rounds=3)(image, tiny, np.array([1]))
    assert out.shape == image.shape
    np.testing.assert_array_equal(out_boxes, tiny)


def test_sanitize_clips_to_the_image_and_drops_boxes_without_area():
    image = np.zeros((50, 100, 3), np.uint8)
    boxes = np.array([[-5, -5, 20, 20], [30, 10, 30, 40], [60, 40, 40, 45], [90, 45, 150, 80]], np.float32)
    _, out_boxes, out_labels = SanitizeBoxes()(image, boxes, np.array([1, 2, 3, 4]))
    np.testing.assert_array_equal(out_boxes, [[0, 0, 20, 20], [90, 45, 100, 50]])
    assert out_labels.tolist() == [1, 4]

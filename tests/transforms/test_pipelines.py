"""TrainAugmentation / TestTransform / PredictionTransform: the original's call shapes and output contract."""
import cv2
import numpy as np
import pytest
import torch

from vision.ssd import data_preprocessing
from vision.transforms import PredictionTransform, TestTransform, TrainAugmentation


def random_boxes(rng, count, width, height):
    """`count` boxes inside a width x height image, some touching the borders, some tiny."""
    corners = rng.uniform(0, 1, size=(count, 2)) * (width - 2, height - 2)
    sizes = rng.uniform(1, 0.6 * min(width, height), size=(count, 2))
    boxes = np.concatenate([corners, np.minimum(corners + sizes, (width, height))], axis=1)
    boxes[: count // 3, 0] = 0
    boxes[: count // 4, 2] = width
    return boxes.astype(np.float32)


def test_compat_module_exports_the_transforms():
    assert data_preprocessing.TrainAugmentation is TrainAugmentation
    assert data_preprocessing.TestTransform is TestTransform
    assert data_preprocessing.PredictionTransform is PredictionTransform


def test_train_augmentation_keeps_boxes_valid_inside_the_image_and_labels_in_step():
    rng = np.random.default_rng(0)
    np.random.seed(0)
    augment = TrainAugmentation(96, mean=[123, 117, 104], std=1.0)
    for trial in range(150):
        height, width = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        count = int(rng.integers(0, 6))
        boxes = random_boxes(rng, count, width, height)
        labels = np.arange(1, count + 1)
        before = boxes.copy()
        tensor, out_boxes, out_labels = augment(image, boxes, labels)
        np.testing.assert_array_equal(boxes, before)  # the caller's arrays are not changed
        assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
        assert tuple(tensor.shape) == (3, 96, 96) and torch.isfinite(tensor).all()
        assert out_boxes.dtype == np.float32 and out_boxes.shape == (len(out_labels), 4)
        assert out_labels.dtype == np.int64 and set(out_labels.tolist()) <= set(labels.tolist())
        assert len(set(out_labels.tolist())) == len(out_labels)  # no box duplicated
        assert ((out_boxes >= 0) & (out_boxes <= 1)).all()
        assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all()
        if count:
            assert len(out_labels) >= 1  # the crop always keeps an object


def test_train_augmentation_boxes_follow_the_object():
    """A white rectangle on black, mean 0 / std 1 so the tensor holds pixels: after every random step,
    the output box must cover the bright pixels and nothing bright lies well outside it."""
    np.random.seed(5)
    augment = TrainAugmentation(100, mean=0, std=1.0)
    image = np.zeros((120, 160, 3), np.uint8)
    image[30:90, 40:100] = 255
    for _ in range(60):
        tensor, boxes, labels = augment(image, np.array([[40, 30, 100, 90]], np.float32), np.array([1]))
        assert labels.tolist() == [1]
        x1, y1, x2, y2 = boxes[0] * 100
        pixels = tensor.min(dim=0).values.numpy()  # the darkest channel (a channel swap keeps white white)
        inner = pixels[int(np.ceil(y1)) + 2:int(y2) - 2, int(np.ceil(x1)) + 2:int(x2) - 2]
        if inner.size:
            assert inner.min() > 100
        outside = np.ones_like(pixels, dtype=bool)
        outside[max(int(y1) - 2, 0):int(np.ceil(y2)) + 2, max(int(x1) - 2, 0):int(np.ceil(x2)) + 2] = False
        assert (pixels[outside] < 60).all()


def test_train_augmentation_passes_images_without_boxes():
    np.random.seed(2)
    augment = TrainAugmentation(64, mean=127, std=128.0)
    image = np.full((50, 70, 3), 200, np.uint8)
    for boxes, labels in ((np.zeros((0, 4), np.float32), np.zeros(0, np.int64)), (None, None)):
        for _ in range(20):
            tensor, out_boxes, out_labels = augment(image, boxes, labels)
            assert tuple(tensor.shape) == (3, 64, 64) and torch.isfinite(tensor).all()
            assert out_boxes.shape == (0, 4) and out_labels.shape == (0,)


def test_test_transform_resizes_with_inter_linear_and_normalises_per_channel():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    boxes = np.array([[5.3, 0, 53, 20.5]], np.float32)
    tensor, out_boxes, labels = TestTransform(32, mean=[123, 117, 104], std=[2.0, 4.0, 8.0])(image, boxes,
                                                                                            np.array([4]))
    expected = (cv2.resize(image, (32, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32)
                - [123, 117, 104]) / [2.0, 4.0, 8.0]
    np.testing.assert_allclose(tensor.numpy(), expected.transpose(2, 0, 1), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out_boxes, [[5.3 / 53, 0, 1, 20.5 / 37]], rtol=1e-6)
    assert labels.tolist() == [4]


def test_prediction_transform_matches_test_transform_image():
    image = np.random.default_rng(2).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    predicted = PredictionTransform(24, 127, 128.0)(image)
    tested, _, _ = TestTransform(24, 127, 128.0)(image)
    assert torch.equal(predicted, tested)
    assert float(predicted.abs().max()) <= 1.0


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), "image"])
def test_non_rgb_input_is_rejected_with_its_shape(bad):
    with pytest.raises(ValueError, match="RGB numpy image"):
        PredictionTransform(16)(bad)


def test_bad_mean_is_rejected():
    with pytest.raises(ValueError, match="mean"):
        TrainAugmentation(16, mean=[1, 2])

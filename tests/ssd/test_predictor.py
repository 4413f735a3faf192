"""The batched predictor against a plain transcription of the original's per-class loop."""
import cv2
import numpy as np
import pytest
import torch

from benchmarks.original_predictor import original_predict
from tests.conftest import rgb_photo
from vision.ssd.registry import create_net, create_predictor
from vision.utils.reference_weights import load_deterministic_weights


@pytest.fixture(scope="module")
def mb1_predictor():
    net = load_deterministic_weights(create_net("mb1-ssd", 21, is_test=True))
    return create_predictor("mb1-ssd", net)


@pytest.fixture(scope="module")
def photo():
    """The VOC photo 000138.jpg, or a generated 500x332 stand-in without the shared folder."""
    return rgb_photo("000138.jpg")


@pytest.mark.parametrize("prob_threshold,top_k", [(0.01, -1), (0.4, -1), (0.05, 3)])
def test_predict_equals_the_original_algorithm(mb1_predictor, photo, prob_threshold, top_k):
    boxes, labels, probs = mb1_predictor.predict(photo, top_k=top_k, prob_threshold=prob_threshold)
    expected_boxes, expected_labels, expected_probs = original_predict(mb1_predictor, photo, top_k, prob_threshold)
    assert labels.tolist() == expected_labels.tolist()
    torch.testing.assert_close(probs, expected_probs, atol=1e-5, rtol=1e-5)
    # The one difference, by design: boxes are clipped to the image (after the same NMS).
    height, width = photo.shape[:2]
    clipped = torch.minimum(expected_boxes.clamp(min=0), torch.tensor([width, height, width, height]))
    torch.testing.assert_close(boxes, clipped, atol=1e-3, rtol=1e-4)
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and probs.dtype == torch.float32


def test_predict_batch_equals_predict_on_each_image(mb1_predictor, photo):
    images = [photo, cv2.resize(photo, (320, 240)), np.ascontiguousarray(photo[:200, :150])]
    batched = mb1_predictor.predict_batch(images, top_k=5, prob_threshold=0.02)
    for image, (boxes, labels, probs) in zip(images, batched):
        single_boxes, single_labels, single_probs = mb1_predictor.predict(image, top_k=5, prob_threshold=0.02)
        assert labels.tolist() == single_labels.tolist()
        torch.testing.assert_close(probs, single_probs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(boxes, single_boxes, atol=1e-3, rtol=1e-4)


def test_no_detection_gives_empty_tensors_of_the_right_shape(mb1_predictor, photo):
    boxes, labels, probs = mb1_predictor.predict(photo, prob_threshold=0.999)
    assert boxes.shape == (0, 4) and labels.shape == (0,) and probs.shape == (0,)
    assert labels.dtype == torch.int64


def test_soft_nms_predictor_keeps_decayed_scores(photo):
    net = load_deterministic_weights(create_net("mb1-ssd-lite", 21, is_test=True))
    soft = create_predictor("mb1-ssd-lite", net, nms_method="soft", sigma=0.5)
    boxes, labels, probs = soft.predict(photo, top_k=10, prob_threshold=0.3)
    assert len(labels) > 0 and (probs > 0.3).all()
    assert (torch.bincount(labels) <= 10).all()


def test_predictor_decodes_a_training_mode_net(mb1_predictor, photo):
    raw = create_net("mb1-ssd", 21, is_test=False)
    raw.load_state_dict(mb1_predictor.net.state_dict())
    boxes, labels, _ = create_predictor("mb1-ssd", raw).predict(photo, prob_threshold=0.4)
    unfolded = create_predictor("mb1-ssd", mb1_predictor.net)
    unfolded.fuse_batchnorm = False  # compare decoding alone; folding has its own tests (tests/ssd/test_fusion.py)
    expected_boxes, expected_labels, _ = unfolded.predict(photo, prob_threshold=0.4)
    assert labels.tolist() == expected_labels.tolist()
    torch.testing.assert_close(boxes, expected_boxes)


def test_bad_image_gets_a_clear_error(mb1_predictor, photo):
    with pytest.raises(ValueError, match="image 1: expected an RGB uint8"):
        mb1_predictor.predict_batch([photo, photo.astype(np.float32)])
    with pytest.raises(ValueError, match="image 0"):
        mb1_predictor.predict(photo[:, :, 0])


def test_predictor_device_defaults_to_the_nets_device(mb1_predictor):
    assert mb1_predictor.device == next(mb1_predictor.net.parameters()).device

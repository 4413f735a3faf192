"""The batched predictor against a plain transcription of the original's per-class loop."""
import cv2
import numpy as np
import pytest
import torch

from tests.conftest import REFERENCE
from vision.ssd.registry import create_net, create_predictor
from vision.utils import box_utils
from vision.utils.reference_weights import load_deterministic_weights


def original_predict(predictor, image, top_k=-1, prob_threshold=None):
    """The original toolkit's Predictor.predict, one class and one box at a time (the slow reference)."""
    height, width, _ = image.shape
    resized = cv2.resize(image, (predictor.size, predictor.size)).astype(np.float32)
    normalised = (resized - predictor.mean.view(3).cpu().numpy()) / predictor.std
    batch = torch.from_numpy(normalised).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        scores, boxes = predictor.net(batch)
    scores, boxes = scores[0], boxes[0]
    threshold = prob_threshold or predictor.filter_threshold
    picked, labels = [], []
    for class_index in range(1, scores.size(1)):
        probs = scores[:, class_index]
        mask = probs > threshold
        if mask.sum() == 0:
            continue
        box_probs = torch.cat([boxes[mask], probs[mask].reshape(-1, 1)], dim=1)
        order = box_probs[:, 4].argsort(descending=True)[:predictor.candidate_size]
        chosen = []
        while len(order) > 0:
            current = order[0]
            chosen.append(current.item())
            if 0 < top_k == len(chosen) or len(order) == 1:
                break
            order = order[1:]
            iou = box_utils.iou_of(box_probs[order, :4], box_probs[current, :4].unsqueeze(0))
            order = order[iou <= predictor.iou_threshold]
        picked.append(box_probs[chosen])
        labels += [class_index] * len(chosen)
    if not picked:
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    picked = torch.cat(picked)
    picked[:, [0, 2]] *= width
    picked[:, [1, 3]] *= height
    return picked[:, :4], torch.tensor(labels), picked[:, 4]


@pytest.fixture(scope="module")
def mb1_predictor():
    net = load_deterministic_weights(create_net("mb1-ssd", 21, is_test=True))
    return create_predictor("mb1-ssd", net)


@pytest.fixture(scope="module")
def photo():
    image = cv2.imread(str(REFERENCE / "images" / "000138.jpg"))
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("prob_threshold,top_k", [(0.01, -1), (0.4, -1), (0.05, 3)])
def test_predict_equals_the_original_algorithm(mb1_predictor, photo, prob_threshold, top_k):
    boxes, labels, probs = mb1_predictor.predict(photo, top_k=top_k, prob_threshold=prob_threshold)
    expected_boxes, expected_labels, expected_probs = original_predict(mb1_predictor, photo, top_k, prob_threshold)
    assert labels.tolist() == expected_labels.tolist()
    torch.testing.assert_close(probs, expected_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(boxes, expected_boxes, atol=1e-3, rtol=1e-4)
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
    expected_boxes, expected_labels, _ = mb1_predictor.predict(photo, prob_threshold=0.4)
    assert labels.tolist() == expected_labels.tolist()
    torch.testing.assert_close(boxes, expected_boxes)


def test_bad_image_gets_a_clear_error(mb1_predictor, photo):
    with pytest.raises(ValueError, match="image 1: expected an RGB uint8"):
        mb1_predictor.predict_batch([photo, photo.astype(np.float32)])
    with pytest.raises(ValueError, match="image 0"):
        mb1_predictor.predict(photo[:, :, 0])


def test_predictor_device_defaults_to_the_nets_device(mb1_predictor):
    assert mb1_predictor.device == next(mb1_predictor.net.parameters()).device

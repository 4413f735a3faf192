"""The predictor's hard NMS end to end: the same detections as the original's per-class loop, bit for bit
(the boxes then clipped to the image, the one documented difference)."""
import os
from pathlib import Path

import cv2
import pytest
import torch
from torchvision.ops import nms as torchvision_nms

from tests.utils.original_nms_reference import original_postprocess
from vision.datasets.synthetic import render_image
from vision.ssd.registry import create_net, create_predictor
from vision.utils.reference_weights import load_deterministic_weights

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PHOTOS = Path(os.environ.get("SSD_SHARED_DIR") or REPO_ROOT.parent / "shared") / "reference" / "images"


def _predictor(net_type: str):
    return create_predictor(net_type, load_deterministic_weights(create_net(net_type, 21, is_test=True)))


@pytest.fixture(scope="module")
def mb1_predictor():
    return _predictor("mb1-ssd")


@pytest.fixture(scope="module")
def vgg16_predictor():
    # With these weights vgg16-ssd also decodes empty boxes (x2 < x1), whose area the original clamps to 0.
    return _predictor("vgg16-ssd")


def _assert_same_as_original(predictor, images, prob_threshold, top_k=-1):
    """Run the predictor on ``images`` end to end and the original's loop on the same net outputs; returns
    the number of detections compared."""
    detections = predictor.predict_batch(images, top_k=top_k, prob_threshold=prob_threshold)
    scores, boxes = predictor.forward(predictor.preprocess(images))  # what predict_batch ran on
    total = 0
    for index, (image, (got_boxes, got_labels, got_probs)) in enumerate(zip(images, detections)):
        height, width = image.shape[:2]
        boxes_expected, labels_expected, probs_expected = original_postprocess(
            scores[index], boxes[index], width, height, prob_threshold, predictor.iou_threshold, top_k,
            predictor.candidate_size)
        assert torch.equal(got_labels, labels_expected), f"image {index}: labels or their order differ"
        assert torch.equal(got_probs, probs_expected), f"image {index}: scores differ"
        # The original's selection; then the boxes clipped to the image, as every predictor here does.
        boxes_expected = torch.stack([boxes_expected[:, 0].clamp(0, width), boxes_expected[:, 1].clamp(0, height),
                                      boxes_expected[:, 2].clamp(0, width), boxes_expected[:, 3].clamp(0, height)],
                                     dim=1) if len(boxes_expected) else boxes_expected
        assert torch.equal(got_boxes, boxes_expected), f"image {index}: boxes differ"
        total += len(got_labels)
    return total


@pytest.mark.parametrize("net_fixture", ["mb1_predictor", "vgg16_predictor"])
def test_hard_nms_equals_the_original_on_generated_images(request, net_fixture):
    predictor = request.getfixturevalue(net_fixture)
    image = render_image((13, 0), width=500, height=375, num_objects=3)[0]
    assert _assert_same_as_original(predictor, [image], prob_threshold=0.01) > 1000  # thousands of decisions
    _assert_same_as_original(predictor, [image], prob_threshold=0.05, top_k=3)


def test_hard_nms_equals_the_original_on_the_reference_photos(mb1_predictor):
    paths = sorted(REFERENCE_PHOTOS.glob("*.jpg"))
    if not paths:
        pytest.skip(f"reference photos not found in {REFERENCE_PHOTOS} (set SSD_SHARED_DIR)")
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]
    _assert_same_as_original(mb1_predictor, images, prob_threshold=0.01)


def test_torchvision_nms_option_decides_with_torchvision(mb1_predictor):
    # mb1-ssd: with vgg16-ssd's huge untrained boxes, batched_nms's coordinate offsets lose precision.
    fast = create_predictor("mb1-ssd", mb1_predictor.net)
    fast.exact_original_nms = False
    image = render_image((14, 0), num_objects=3)[0]
    got_boxes, got_labels, got_probs = fast.predict(image, prob_threshold=0.05)
    scores, boxes = fast.forward(fast.preprocess([image]))
    expected_labels, expected_probs = [], []
    for class_index in range(1, scores.shape[2]):
        class_scores = scores[0, :, class_index]
        candidates = class_scores.argsort(descending=True)[:fast.candidate_size]
        candidates = candidates[class_scores[candidates] > 0.05]
        kept = candidates[torchvision_nms(boxes[0, candidates], class_scores[candidates], fast.iou_threshold)]
        expected_labels += [class_index] * len(kept)
        expected_probs.append(class_scores[kept])
    assert got_labels.tolist() == expected_labels
    assert torch.equal(got_probs, torch.cat(expected_probs))


def test_equal_scores_rank_in_prior_order_also_across_the_candidate_cut(mb1_predictor):
    # Scores on a coarse grid tie everywhere, also at rank candidate_size; the original's loop with a
    # stable sort is the reference (its own sort leaves the order of equal scores unspecified).
    generator = torch.Generator().manual_seed(8)
    num_priors = 3000
    raw = torch.rand(2, num_priors, 4, generator=generator)
    scores = torch.softmax(raw * 3, dim=2)
    scores = torch.round(scores * 40) / 40
    low = torch.rand(2, num_priors, 2, generator=generator) * 0.9
    boxes = torch.cat([low, low + torch.rand(2, num_priors, 2, generator=generator) * 0.08 + 0.01], dim=2)
    sizes = [(375, 500), (240, 320)]
    for top_k in (-1, 4):
        results = mb1_predictor.postprocess(scores, boxes, sizes, top_k=top_k, prob_threshold=0.2)
        for index, (got_boxes, got_labels, got_probs) in enumerate(results):
            height, width = sizes[index]
            expected = original_postprocess(scores[index], boxes[index], width, height, 0.2,
                                            mb1_predictor.iou_threshold, top_k, mb1_predictor.candidate_size)
            assert torch.equal(got_labels, expected[1]) and torch.equal(got_probs, expected[2])
            assert torch.equal(got_boxes, expected[0])

"""The batched exact hard NMS against a direct transcription of the original's per-class loop."""
import itertools

import torch
from torchvision.ops import nms as torchvision_nms

from tests.utils.original_nms_reference import original_hard_nms, original_iou_of
from vision.utils import box_utils
from vision.utils.nms import batched_hard_nms_original, padded_hard_nms_original, pairwise_iou_original

THRESHOLD = 0.45


def _reference_keep(boxes, scores, groups, iou_threshold=THRESHOLD, candidate_size=200):
    """Indexes kept by the original, group by group (ascending), best first inside a group."""
    kept = []
    for group in torch.unique(groups).tolist():
        members = (groups == group).nonzero(as_tuple=True)[0]
        box_scores = torch.cat([boxes[members], scores[members, None]], dim=1)
        kept += members[original_hard_nms(box_scores, iou_threshold, candidate_size=candidate_size)].tolist()
    return kept


def _shifted_pairs(widths, targets, with_eps: bool):
    """Pairs (better, worse) of equal boxes, the worse shifted right so the IoU (with or without the
    original's 1e-5) is each target. Returns boxes (2n, 4), scores (2n,), groups (2n,): one group per pair."""
    rows = []
    for width, target in itertools.product(widths, targets):
        height = width * 1.3
        eps = 1e-5 if with_eps else 0.0
        # (w - s) h / ((w + s) h + eps) = target, solved for the shift s.
        shift = (width * height * (1 - target) - target * eps) / (height * (1 + target))
        left, top = 0.0, 0.0  # float32 is finest near 0, so the IoU lands within 1e-6 of the target
        rows.append([left, top, left + width, top + height])
        rows.append([left + shift, top, left + shift + width, top + height])
    boxes = torch.tensor(rows, dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8] * (len(rows) // 2))
    groups = torch.arange(len(rows) // 2).repeat_interleave(2)
    return boxes, scores, groups


def test_pairwise_iou_is_bit_identical_to_the_originals_iou_of():
    generator = torch.Generator().manual_seed(3)
    corners = torch.rand(3, 40, 2, generator=generator)
    sides = torch.rand(3, 40, 2, generator=generator) * 0.2 - 0.02  # a few empty boxes (negative sides)
    boxes = torch.cat([corners, corners + sides], dim=2)
    matrix = pairwise_iou_original(boxes)
    for group in range(3):
        for better in range(40):
            expected = original_iou_of(boxes[group], boxes[group, better].unsqueeze(0))
            assert torch.equal(matrix[group, better], expected)


def test_pairs_at_the_threshold_plus_minus_1e6_are_decided_as_the_original():
    widths = [0.01, 0.02, 0.05, 0.1, 0.3, 0.6]
    targets = [THRESHOLD + step * 1e-7 for step in (-10, -5, -2, -1, 0, 1, 2, 5, 10)]
    for with_eps in (True, False):
        boxes, scores, groups = _shifted_pairs(widths, targets, with_eps)
        ious = original_iou_of(boxes[1::2], boxes[0::2], eps=1e-5 if with_eps else 0.0)
        assert ((ious.double() - THRESHOLD).abs() <= 1.2e-6).all()
        assert (ious > THRESHOLD).any() and (ious <= THRESHOLD).any()  # both sides of the threshold
        keep = batched_hard_nms_original(boxes, scores, groups, THRESHOLD)
        assert keep.tolist() == _reference_keep(boxes, scores, groups)
    # The crafted pairs do tell the formulas apart: torchvision's epsilon-free IoU drops boxes the original keeps.
    boxes, scores, groups = _shifted_pairs(widths, targets, with_eps=True)
    disagreements = sum(
        len(torchvision_nms(boxes[2 * pair:2 * pair + 2], scores[2 * pair:2 * pair + 2], THRESHOLD))
        != len(_reference_keep(boxes[2 * pair:2 * pair + 2], scores[2 * pair:2 * pair + 2], groups[:2]))
        for pair in range(len(boxes) // 2))
    assert disagreements > 0


def test_two_small_boxes_at_torchvision_iou_0455_are_both_kept():
    # 0.02 wide: torchvision's IoU 0.455 is the original's 0.4469, below the threshold.
    shift = 0.02 * (1 - 0.455) / (1 + 0.455)
    boxes = torch.tensor([[0.5, 0.5, 0.52, 0.52], [0.5 + shift, 0.5, 0.52 + shift, 0.52]])
    scores = torch.tensor([0.9, 0.8])
    assert len(torchvision_nms(boxes, scores, THRESHOLD)) == 1
    keep = batched_hard_nms_original(boxes, scores, torch.zeros(2, dtype=torch.int64), THRESHOLD)
    assert keep.tolist() == [0, 1]


def test_small_boxes_clusters_equal_the_original():
    generator = torch.Generator().manual_seed(11)
    num_groups, per_group = 12, 60
    centres = torch.rand(num_groups, 1, 2, generator=generator) * 0.8 + 0.1
    jitter = (torch.rand(num_groups, per_group, 2, generator=generator) - 0.5) * 0.03
    sides = torch.rand(num_groups, per_group, 2, generator=generator) * 0.04 + 0.01  # 0.01-0.05 wide
    low = centres + jitter - sides / 2
    boxes = torch.cat([low, low + sides], dim=2).reshape(-1, 4)
    scores = torch.rand(num_groups * per_group, generator=generator)
    groups = torch.arange(num_groups).repeat_interleave(per_group) * 7  # group ids need not be dense
    shuffle = torch.randperm(len(scores), generator=generator)
    boxes, scores, groups = boxes[shuffle], scores[shuffle], groups[shuffle]
    keep = batched_hard_nms_original(boxes, scores, groups, THRESHOLD)
    assert keep.tolist() == _reference_keep(boxes, scores, groups)
    torchvision_kept = sum(len(torchvision_nms(boxes[groups == g], scores[groups == g], THRESHOLD))
                           for g in torch.unique(groups).tolist())
    assert torchvision_kept < len(keep)  # the epsilon matters at this size


def test_suppression_cascades_a_removed_box_suppresses_nothing():
    # A overlaps B above the threshold, B overlaps C above it, A and C barely: A and C stay.
    boxes = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4], [0.2, 0.0, 0.6, 0.4]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = batched_hard_nms_original(boxes, scores, torch.zeros(3, dtype=torch.int64), THRESHOLD)
    assert keep.tolist() == [0, 2] == _reference_keep(boxes, scores, torch.zeros(3, dtype=torch.int64))


def test_long_chains_and_candidate_size_equal_the_original():
    # A row of boxes each overlapping the next above the threshold: every second one survives.
    left = torch.arange(30, dtype=torch.float32) * 0.01
    boxes = torch.stack([left, torch.zeros(30), left + 0.05, torch.full((30,), 0.05)], dim=1)
    scores = torch.linspace(0.9, 0.1, 30)
    groups = torch.zeros(30, dtype=torch.int64)
    for candidate_size in (200, 7):
        keep = batched_hard_nms_original(boxes, scores, groups, THRESHOLD, candidate_size=candidate_size)
        assert keep.tolist() == _reference_keep(boxes, scores, groups, candidate_size=candidate_size)
    assert len(batched_hard_nms_original(boxes, scores, groups, THRESHOLD, candidate_size=7)) <= 7


def test_equal_scores_keep_input_order_and_padding_suppresses_nothing():
    boxes = torch.tensor([[0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    keep = batched_hard_nms_original(boxes, scores, torch.zeros(3, dtype=torch.int64), THRESHOLD)
    assert keep.tolist() == [0, 2]
    padded = torch.zeros(1, 3, 4)
    padded[0, 1:] = boxes[1:]
    padded[0, 0] = boxes[0]
    valid = torch.tensor([[False, True, True]])
    assert padded_hard_nms_original(padded, valid, THRESHOLD).tolist() == [[False, True, True]]


def test_empty_input_gives_no_indexes():
    keep = batched_hard_nms_original(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), THRESHOLD)
    assert keep.shape == (0,) and keep.dtype == torch.int64


def test_box_utils_hard_nms_is_the_originals():
    generator = torch.Generator().manual_seed(5)
    low = torch.rand(300, 2, generator=generator) * 0.3
    boxes = torch.cat([low, low + torch.rand(300, 2, generator=generator) * 0.04 + 0.01], dim=1)
    box_scores = torch.cat([boxes, torch.rand(300, 1, generator=generator)], dim=1)
    for top_k, candidate_size in ((-1, 200), (5, 200), (-1, 50)):
        kept = box_utils.hard_nms(box_scores, THRESHOLD, top_k=top_k, candidate_size=candidate_size)
        expected = box_scores[original_hard_nms(box_scores, THRESHOLD, top_k, candidate_size)]
        assert torch.equal(kept, expected)
    assert torch.equal(box_utils.nms(box_scores, None, iou_threshold=THRESHOLD),
                       box_scores[original_hard_nms(box_scores, THRESHOLD)])

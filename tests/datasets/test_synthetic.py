import numpy as np
import pytest

from vision.cli.synthetic_dataset import main
from vision.datasets import VOCDataset
from vision.datasets.synthetic import SHAPE_CLASSES, generate_voc_dataset, render_image
from vision.transforms.box_ops import iou_matrix


def test_shapes_root_reads_as_a_voc_root_with_both_splits(shapes_root):
    trainval, test = VOCDataset(shapes_root), VOCDataset(shapes_root, is_test=True)
    assert (len(trainval), len(test)) == (12, 4)
    assert set(trainval.ids).isdisjoint(test.ids)
    assert trainval.class_names == ("BACKGROUND",) + SHAPE_CLASSES
    assert (shapes_root / "labels.txt").read_text().split() == list(SHAPE_CLASSES)
    image, boxes, labels = trainval[0]
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8


def test_objects_per_image_empty_share_and_box_geometry(shapes_root):
    counts = []
    for dataset in (VOCDataset(shapes_root), VOCDataset(shapes_root, is_test=True)):
        for index in range(len(dataset)):
            _, (boxes, labels, difficult) = dataset.get_annotation(index)
            counts.append(len(boxes))
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 159).all() and (boxes[:, 3] <= 119).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            assert (sides >= 0.15 * 120 - 2).all() and (sides <= 0.5 * 120 + 2).all()
            iou = iou_matrix(boxes, boxes)
            assert (iou[~np.eye(len(boxes), dtype=bool)] < 0.3).all()
            assert not difficult.any() and (labels >= 1).all()
    # empty_fraction=0.25: 3 of the 12 trainval and 1 of the 4 test images have no object.
    assert counts[:12].count(0) == 3 and counts[12:].count(0) == 1
    assert all(1 <= count <= 4 for count in counts if count)


def test_same_seed_gives_identical_files_with_any_worker_count_and_another_seed_does_not(tmp_path):
    first = generate_voc_dataset(tmp_path / "a", num_images=3, num_test=1, seed=7, width=96, height=64)
    generate_voc_dataset(tmp_path / "b", num_images=3, num_test=1, seed=7, width=96, height=64, num_workers=2)
    generate_voc_dataset(tmp_path / "c", num_images=3, num_test=1, seed=8, width=96, height=64)
    for image_id in first.trainval_ids + first.test_ids:
        for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
            data = (tmp_path / "a" / folder / f"{image_id}{suffix}").read_bytes()
            assert data == (tmp_path / "b" / folder / f"{image_id}{suffix}").read_bytes()
    assert (tmp_path / "a/JPEGImages/000000.jpg").read_bytes() != (tmp_path / "c/JPEGImages/000000.jpg").read_bytes()


def test_box_is_tight_around_the_drawn_shape():
    # Shapes are drawn in a colour far from the background; the pixels that changed most lie in the box.
    image, objects = render_image((0, 5), width=200, height=150, num_objects=1)
    background, _ = render_image((0, 5), width=200, height=150, num_objects=0)
    x1, y1, x2, y2 = objects[0].box
    changed = np.abs(image.astype(int) - background.astype(int)).sum(axis=2) > 120
    ys, xs = np.nonzero(changed)
    assert xs.min() >= x1 - 2 and xs.max() <= x2 + 2 and ys.min() >= y1 - 2 and ys.max() <= y2 + 2
    assert xs.min() <= x1 + 3 and xs.max() >= x2 - 3 and ys.min() <= y1 + 3 and ys.max() >= y2 - 3


def test_command_line_writes_the_requested_split_sizes(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "cli"), "--num_images", "2", "--num_test", "1", "--width", "64",
                 "--height", "48", "--min_objects", "2", "--max_objects", "2"]) == 0
    assert "2 trainval + 1 test images" in capsys.readouterr().out
    dataset = VOCDataset(tmp_path / "cli")
    assert len(dataset) == 2
    assert (tmp_path / "cli/ImageSets/Main/test.txt").read_text() == "000002\n"


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="min_objects"):
        generate_voc_dataset(tmp_path, num_images=1, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="empty_fraction"):
        generate_voc_dataset(tmp_path, num_images=1, empty_fraction=1.5)


def test_small_objects_option_writes_640x480_images_with_10_to_40_pixel_objects(tmp_path):
    assert main(["--root", str(tmp_path), "--num_images", "3", "--num_test", "0", "--small_objects",
                 "--max_objects", "6", "--num_workers", "1"]) == 0
    dataset = VOCDataset(tmp_path)
    sides = []
    for index in range(len(dataset)):
        image_id, (boxes, _, _) = dataset.get_annotation(index)
        assert dataset.get_image(index).shape == (480, 640, 3)
        sides += list(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
    assert sides and 8 <= min(sides) and max(sides) <= 42  # 10-40 px, give or take VOC's 1-pixel rounding

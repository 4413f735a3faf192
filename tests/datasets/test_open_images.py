import numpy as np
import pytest

from tests.datasets.conftest import write_jpeg
from vision.datasets import BadDataWarning, DatasetError, OpenImagesDataset, build_dataset

HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,id,ClassName\n"


def row(image_id, class_name, xmin, xmax, ymin, ymax):
    return f"{image_id},xclick,/m/0,1,{xmin},{xmax},{ymin},{ymax},0,0,/m/0,{class_name}\n"


def write_split(root, split, rows, image_ids, width=80, height=40):
    (root / f"sub-{split}-annotations-bbox.csv").write_text(HEADER + "".join(rows))
    for image_id in image_ids:
        write_jpeg(root / split / f"{image_id}.jpg", width, height)


@pytest.fixture
def open_images_root(tmp_path):
    write_split(tmp_path, "train", [row("img2", "Dog", 0.5, 1.0, 0.0, 0.5), row("img1", "Cat", 0.0, 0.5, 0.25, 0.75),
                                    row("img1", "Dog", 0.1, 0.2, 0.1, 0.2), row("img3", "Bird", 0, 1, 0, 1)],
                ["img1", "img2", "img3"])
    # The test split has no Bird and lists its classes in another order.
    write_split(tmp_path, "test", [row("t1", "Dog", 0.0, 0.25, 0.0, 1.0), row("t2", "Cat", 0.5, 0.75, 0.5, 1.0)],
                ["t1", "t2"])
    return tmp_path


def test_boxes_are_converted_to_pixels_and_grouped_by_image(open_images_root):
    dataset = OpenImagesDataset(open_images_root)
    assert dataset.class_names == ("BACKGROUND", "Bird", "Cat", "Dog")
    assert dataset.ids == ["img1", "img2", "img3"]
    image, boxes, labels = dataset[0]
    assert image.shape == (40, 80, 3) and boxes.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_allclose(boxes, [[0, 10, 40, 30], [8, 4, 16, 8]])
    assert labels.tolist() == [dataset.class_dict["Cat"], dataset.class_dict["Dog"]]
    image_id, (annotation_boxes, annotation_labels, difficult) = dataset.get_annotation(0)
    assert image_id == "img1"
    np.testing.assert_allclose(annotation_boxes, boxes)
    assert difficult.tolist() == [0, 0] and difficult.dtype == np.uint8


def test_every_split_uses_the_training_class_list(open_images_root):
    train = OpenImagesDataset(open_images_root, dataset_type="train")
    test = OpenImagesDataset(open_images_root, dataset_type="test")
    assert test.class_names == train.class_names
    _, _, labels = test[0]
    assert labels.tolist() == [train.class_dict["Dog"]]


def test_class_missing_from_the_training_list_is_an_error_naming_the_file(open_images_root):
    write_split(open_images_root, "validation", [row("v1", "Unicorn", 0, 1, 0, 1)], ["v1"])
    with pytest.raises(DatasetError, match=r"sub-validation-annotations-bbox\.csv.*Unicorn"):
        OpenImagesDataset(open_images_root, dataset_type="validation")


def test_zero_area_rows_are_dropped_with_a_warning_and_boxes_clipped(tmp_path):
    write_split(tmp_path, "train", [row("a", "Dog", 0.5, 0.5, 0.0, 1.0), row("a", "Cat", -0.1, 0.5, 0.5, 1.2),
                                    row("b", "Dog", 0.9, 0.1, 0.0, 1.0)], ["a", "b"])
    with pytest.warns(BadDataWarning, match=r"sub-train-annotations-bbox\.csv: dropped 2 box.*'a', 'b'"):
        dataset = OpenImagesDataset(tmp_path)
    assert dataset.ids == ["a", "b"]
    _, boxes, labels = dataset[0]
    np.testing.assert_allclose(boxes, [[0, 20, 40, 40]])
    assert dataset[1][1].shape == (0, 4)  # every box of b dropped: an image without objects


def test_unreadable_image_is_skipped_with_a_warning(open_images_root):
    (open_images_root / "train" / "img2.jpg").write_bytes(b"\xff\xd8 broken")
    dataset = OpenImagesDataset(open_images_root)
    with pytest.warns(BadDataWarning, match="img2.jpg"):
        assert dataset[1] is None
    with pytest.warns(BadDataWarning, match="img2.jpg"):
        assert dataset.get_image(1) is None


def test_balance_data_caps_every_class_at_the_rarest_class_count(tmp_path):
    rows = [row(f"dog{i:02d}", "Dog", 0, 0.5, 0, 0.5) for i in range(20)]
    rows += [row(f"cat{i}", "Cat", 0, 0.5, 0, 0.5) for i in range(3)]
    rows += [row("cat0", "Dog", 0.5, 1, 0.5, 1)]  # an image with both classes
    write_split(tmp_path, "train", rows, [])
    np.random.seed(0)
    full = OpenImagesDataset(tmp_path)
    balanced = OpenImagesDataset(tmp_path, balance_data=True)
    assert len(full) == 23 and balanced.min_image_num == 3
    images_with = {name: sum(name in [balanced.class_names[label] for label in balanced.relative_annotation(i)[1]]
                             for i in range(len(balanced))) for name in ("Cat", "Dog")}
    assert images_with["Cat"] == 3  # the rarest class keeps all its images
    assert 3 <= images_with["Dog"] <= 4 < 20  # 3 drawn, plus cat0 when it was not one of them
    for index, image_id in enumerate(balanced.ids):  # boxes stay with their image
        boxes, labels = balanced.relative_annotation(index)
        full_index = full.ids.index(image_id)
        np.testing.assert_array_equal(labels, full.relative_annotation(full_index)[1])


def test_build_dataset_open_images_test_split(open_images_root):
    dataset, class_names = build_dataset("open_images", [str(open_images_root)], None, None, is_test=True)
    assert dataset.ids == ["t1", "t2"] and class_names == ["BACKGROUND", "Bird", "Cat", "Dog"]

import numpy as np
import pytest

from tests.datasets.conftest import voc_object, voc_xml
from vision.datasets import (
    VOC_CLASS_NAMES,
    BadDataWarning,
    ConcatDetectionDataset,
    DatasetError,
    VOCDataset,
    build_dataset,
    store_labels,
)
from vision.transforms import TestTransform
from vision.utils.labels import LabelFileError, read_label_file

# --- the genuine VOC sample ------------------------------------------------------------------------------

def test_genuine_sample_splits_object_and_difficult_counts(voc_sample_dir):
    trainval = VOCDataset(voc_sample_dir)
    test = VOCDataset(voc_sample_dir, is_test=True)
    assert (len(trainval), len(test)) == (88, 22)
    assert trainval.class_names == VOC_CLASS_NAMES  # no labels.txt there
    objects = [trainval.get_annotation(i)[1] for i in range(len(trainval))]
    objects += [test.get_annotation(i)[1] for i in range(len(test))]
    assert sum(len(boxes) for boxes, _, _ in objects) == 288
    assert sum(int(difficult.sum()) for _, _, difficult in objects[:88]) == 28
    assert sum(int(difficult.sum()) for _, _, difficult in objects[88:]) == 10
    counts = np.bincount(np.concatenate([labels for _, labels, _ in objects]), minlength=21)
    assert counts[trainval.class_dict["person"]] == 93 and counts[trainval.class_dict["motorbike"]] == 5


@pytest.mark.parametrize("image_id, expected_first_box, class_name", [
    ("2007_000027", [173, 100, 348, 350], "person"),  # convert2Yolo file with <part>s (their boxes ignored)
    ("darkflow_1", [134, 24, 235, 187], "person"),    # VOC2007 layout with <owner><name>
    ("2008_002045", [0, 15, 351, 271], "cat"),        # VOC2008: <difficult> after <bndbox>
    ("2010_004175", [0, 38, 247, 299], "cat"),        # VOC2010: tags in alphabetical order
])
def test_genuine_sample_layouts_give_zero_based_boxes(voc_sample_dir, image_id, expected_first_box, class_name):
    dataset = VOCDataset(voc_sample_dir)
    index = dataset.ids.index(image_id)
    _, (boxes, labels, _) = dataset.get_annotation(index)
    assert boxes.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(boxes[0], expected_first_box)
    assert dataset.class_names[labels[0]] == class_name
    image, item_boxes, _ = dataset[index]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert (item_boxes[:, 2] <= image.shape[1]).all() and (item_boxes[:, 3] <= image.shape[0]).all()


def test_genuine_sample_image_is_rgb(voc_sample_dir):
    import cv2
    dataset = VOCDataset(voc_sample_dir)
    bgr = cv2.imread(str(voc_sample_dir / "JPEGImages" / f"{dataset.ids[0]}.jpg"))
    np.testing.assert_array_equal(dataset._read_image(dataset.ids[0]), bgr[:, :, ::-1])


# --- difficult objects ------------------------------------------------------------------------------------

def test_difficult_objects_left_out_of_training_but_kept_flagged_for_evaluation(voc_root):
    objects = [voc_object("dog", (2, 3, 20, 30), 0), voc_object("cat", (10, 10, 40, 40), 1),
               voc_object("person", (5, 5, 9, 9))]  # no <difficult> tag: not difficult
    root = voc_root().add("a", voc_xml(objects)).split("trainval", ["a"]).root
    dataset = VOCDataset(root)
    _, boxes, labels = dataset[0]
    assert [VOC_CLASS_NAMES[i] for i in labels] == ["dog", "person"]
    np.testing.assert_array_equal(boxes[0], [1, 2, 19, 29])
    image_id, (all_boxes, all_labels, difficult) = dataset.get_annotation(0)
    assert image_id == "a" and len(all_boxes) == 3
    np.testing.assert_array_equal(difficult, [0, 1, 0])
    assert len(VOCDataset(root, keep_difficult=True)[0][1]) == 3


# --- class lists ------------------------------------------------------------------------------------------

def test_comma_separated_labels_with_spaces_and_mixed_case_match_xml_names(voc_root):
    builder = voc_root().labels(" Circle , SQUARE,\ntriangle \n")
    builder.add("a", voc_xml([voc_object("circle", (1, 1, 9, 9)), voc_object("Square", (2, 2, 8, 8)),
                              voc_object("TRIANGLE ", (3, 3, 7, 7))])).split("trainval", ["a"])
    dataset = VOCDataset(builder.root)
    assert dataset.class_names == ("BACKGROUND", "Circle", "SQUARE", "triangle")
    assert dataset.class_dict["SQUARE"] == 2
    np.testing.assert_array_equal(dataset[0][2], [1, 2, 3])


def test_one_a_line_labels_with_background_first_is_not_doubled(voc_root):
    builder = voc_root().labels("BACKGROUND\nstar\nring\n\n")
    builder.add("a", voc_xml([voc_object("ring", (1, 1, 9, 9))])).split("trainval", ["a"])
    dataset = VOCDataset(builder.root)
    assert dataset.class_names == ("BACKGROUND", "star", "ring")
    np.testing.assert_array_equal(dataset[0][2], [2])


def test_label_file_argument_overrides_root_labels(voc_root, tmp_path):
    builder = voc_root().labels("a,b").add("x", voc_xml([])).split("trainval", ["x"])
    other = tmp_path / "model-labels.txt"
    store_labels(other, ["BACKGROUND", "b", "c"])
    assert VOCDataset(builder.root, label_file=other).class_names == ("BACKGROUND", "b", "c")


def test_bad_label_lists_are_errors_naming_the_file_and_line(voc_root):
    builder = voc_root().labels("cat\ndog\nCat\n").add("a", voc_xml([])).split("trainval", ["a"])
    with pytest.raises(LabelFileError, match=r"labels\.txt: line 3: class 'Cat' appears twice \(first on line 1\)"):
        VOCDataset(builder.root)
    builder.labels("cat\nBACKGROUND\n")
    with pytest.raises(LabelFileError, match=r"labels\.txt: line 2: 'BACKGROUND'; BACKGROUND may only come first"):
        VOCDataset(builder.root)


def test_store_labels_writes_one_name_a_line_and_reads_back(tmp_path):
    path = tmp_path / "labels.txt"
    store_labels(path, ["BACKGROUND", "traffic light", "cat"])
    assert path.read_text() == "BACKGROUND\ntraffic light\ncat\n"
    assert read_label_file(path) == ["BACKGROUND", "traffic light", "cat"]


def test_unknown_class_name_is_an_error_naming_file_and_class(voc_root):
    builder = voc_root().add("a", voc_xml([voc_object("dog", (1, 1, 9, 9))]))
    builder.add("b", voc_xml([voc_object("unicorn", (1, 1, 9, 9))])).split("trainval", ["a", "b"])
    with pytest.raises(DatasetError, match=r"b\.xml: 'unicorn'"):
        VOCDataset(builder.root)


# --- image lists ------------------------------------------------------------------------------------------

def test_default_txt_is_used_when_trainval_and_test_are_missing(voc_root):
    builder = voc_root().add("a", voc_xml([voc_object("dog", (1, 1, 9, 9))])).split("default", ["a"])
    assert VOCDataset(builder.root).ids == ["a"]
    assert VOCDataset(builder.root, is_test=True).ids == ["a"]


def test_missing_image_list_is_an_error_naming_the_files(voc_root):
    with pytest.raises(DatasetError, match="trainval.txt.*default.txt"):
        VOCDataset(voc_root().root)


# --- bad data ---------------------------------------------------------------------------------------------

def test_corrupt_truncated_and_missing_images_are_skipped_with_a_warning_naming_the_file(voc_root):
    builder = voc_root()
    for image_id in ("good", "corrupt", "truncated", "missing"):
        builder.add(image_id, voc_xml([voc_object("dog", (1, 1, 9, 9))]), with_image=image_id != "missing")
    builder.split("trainval", ["good", "corrupt", "truncated", "missing"])
    (builder.root / "JPEGImages/corrupt.jpg").write_bytes(b"not a jpeg at all")
    jpeg = (builder.root / "JPEGImages/truncated.jpg").read_bytes()
    (builder.root / "JPEGImages/truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    dataset = VOCDataset(builder.root)
    assert dataset[0] is not None
    for index, name in ((1, "corrupt.jpg"), (2, "truncated.jpg"), (3, "missing.jpg")):
        with pytest.warns(BadDataWarning, match=name):
            assert dataset[index] is None
        with pytest.warns(BadDataWarning, match=name):
            assert dataset.get_image(index) is None


def test_malformed_xml_is_reported_at_construction_and_its_sample_skipped(voc_root):
    builder = voc_root().add("good", voc_xml([voc_object("dog", (1, 1, 9, 9))]))
    builder.add("broken", "<annotation><object><name>dog</name>")  # cut short
    builder.add("nobox", voc_xml(["<object><name>dog</name></object>"]))
    builder.add("text", voc_xml([voc_object("dog", ("one", 1, 9, 9))]))
    builder.split("trainval", ["good", "broken", "nobox", "text", "absent"])  # absent: no XML at all
    with pytest.warns(BadDataWarning) as records:
        dataset = VOCDataset(builder.root)
    messages = " ".join(str(record.message) for record in records)
    for name in ("broken.xml", "nobox.xml", "text.xml", "absent.xml"):
        assert name in messages
    assert len(dataset) == 5 and dataset[0] is not None
    for index in range(1, 5):
        with pytest.warns(BadDataWarning):
            assert dataset[index] is None
        assert dataset.is_bad_annotation(index)
        assert len(dataset.get_annotation(index)[1][0]) == 0


def test_inverted_and_zero_area_boxes_are_dropped_with_a_warning_naming_the_file(voc_root):
    objects = [voc_object("dog", (5, 5, 20, 20)), voc_object("cat", (30, 5, 10, 20)),  # inverted x
               voc_object("cow", (7, 7, 7, 30)), voc_object("bus", (1, 1, 64, 48))]  # zero width; whole image
    builder = voc_root().add("a", voc_xml(objects)).split("trainval", ["a"])
    with pytest.warns(BadDataWarning, match=r"a\.xml: dropped 2 box"):
        dataset = VOCDataset(builder.root)
    _, boxes, labels = dataset[0]
    assert [VOC_CLASS_NAMES[i] for i in labels] == ["dog", "bus"]
    np.testing.assert_array_equal(boxes[1], [0, 0, 63, 47])


def test_boxes_are_clipped_to_the_image_and_boxes_outside_it_dropped(voc_root):
    # The XML says 640x480 but the image is 64x48: one box sticks out, one lies wholly outside.
    objects = [voc_object("dog", (-5, 10, 300, 20)), voc_object("cat", (100, 100, 200, 200))]
    builder = voc_root().add("a", voc_xml(objects, width=640, height=480)).split("trainval", ["a"])
    dataset = VOCDataset(builder.root)
    with pytest.warns(BadDataWarning, match=r"a\.xml: dropped 1 box.*64x48"):
        image, boxes, labels = dataset[0]
    assert image.shape == (48, 64, 3)
    np.testing.assert_array_equal(boxes, [[0, 9, 64, 19]])
    assert [VOC_CLASS_NAMES[i] for i in labels] == ["dog"]


# --- images without objects -------------------------------------------------------------------------------

def test_image_without_objects_loads_and_transforms(voc_root):
    builder = voc_root().add("empty", voc_xml([])).split("trainval", ["empty"])
    image, boxes, labels = VOCDataset(builder.root)[0]
    assert image.shape == (48, 64, 3) and boxes.shape == (0, 4) and labels.shape == (0,)
    assert boxes.dtype == np.float32 and labels.dtype == np.int64
    tensor, boxes, labels = VOCDataset(builder.root, transform=TestTransform(32))[0]
    assert tuple(tensor.shape) == (3, 32, 32) and boxes.shape == (0, 4) and labels.shape == (0,)


def test_get_image_applies_the_transform_to_the_image_alone(voc_sample_dir):
    dataset = VOCDataset(voc_sample_dir, transform=TestTransform(64, 127, 128.0))
    image = dataset.get_image(0)
    assert tuple(image.shape) == (3, 64, 64) and float(image.abs().max()) <= 1.0


def test_items_do_not_share_memory_with_the_annotation_cache(voc_root):
    builder = voc_root().add("a", voc_xml([voc_object("dog", (5, 5, 20, 20))])).split("trainval", ["a"])
    dataset = VOCDataset(builder.root)
    dataset[0][1][:] = -1
    dataset.get_annotation(0)[1][0][:] = -1
    np.testing.assert_array_equal(dataset[0][1], [[4, 4, 19, 19]])


# --- several roots ----------------------------------------------------------------------------------------

def test_build_dataset_concatenates_roots_and_maps_annotations(voc_root):
    first = voc_root("A").labels("dog,cat").add("a1", voc_xml([voc_object("dog", (1, 1, 9, 9))]))
    first.add("a2", voc_xml([])).split("trainval", ["a1", "a2"])
    second = voc_root("B").labels("Dog\nCat\n").add("b1", voc_xml([voc_object("cat", (2, 2, 9, 9))]))
    second.split("trainval", ["b1"])
    dataset, class_names = build_dataset("voc", [str(first.root), str(second.root)], None, None)
    assert isinstance(dataset, ConcatDetectionDataset) and len(dataset) == 3
    assert class_names == ["BACKGROUND", "dog", "cat"]
    image_id, (boxes, labels, _) = dataset.get_annotation(2)
    assert image_id == "b1" and labels.tolist() == [2]
    assert dataset.ids[2] == (str(second.root), "b1")
    assert dataset[2][2].tolist() == [2]
    single, _ = build_dataset("voc", [str(first.root)], None, None)
    assert isinstance(single, VOCDataset)


def test_build_dataset_rejects_roots_whose_class_lists_differ(voc_root):
    first = voc_root("A").labels("dog,cat").add("a", voc_xml([])).split("trainval", ["a"])
    second = voc_root("B").labels("cat,dog").add("b", voc_xml([])).split("trainval", ["b"])
    with pytest.raises(DatasetError, match=r"class lists.*A.*B"):
        build_dataset("voc", [str(first.root), str(second.root)], None, None)
    with pytest.raises(DatasetError, match="not one of"):
        build_dataset("tfrecord", [str(first.root)], None, None)

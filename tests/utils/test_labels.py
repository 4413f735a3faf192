"""vision.utils.labels: the one label-file reader, both of the original's forms, and its errors."""
import pytest

from vision.utils.labels import LabelFileError, parse_label_text, read_label_file, store_labels, write_label_file


def test_file_starting_with_background_gets_no_second_one(tmp_path):
    path = tmp_path / "model-labels.txt"
    path.write_text("BACKGROUND\ncat\ndog\n")
    assert read_label_file(path) == ["BACKGROUND", "cat", "dog"]
    assert parse_label_text("background, cat") == ["background", "cat"]  # case-insensitive, kept as written


def test_file_without_background_gets_it_as_class_0(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat, dog\nbird\n")  # the original's comma form, which may span lines
    assert read_label_file(path) == ["BACKGROUND", "cat", "dog", "bird"]


def test_names_with_slashes_dashes_and_spaces_are_kept(tmp_path):
    """The COCO list as the pretrained-weights files write it: torchvision's unused ids as N/A-<id>."""
    path = tmp_path / "coco-labels.txt"
    path.write_text("BACKGROUND\nperson\nN/A-12\nstop sign\nN/A-26\n")
    assert read_label_file(path) == ["BACKGROUND", "person", "N/A-12", "stop sign", "N/A-26"]


def test_duplicate_name_is_an_error_naming_the_file_and_both_lines(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("BACKGROUND\nN/A\nperson\nN/A\n")
    with pytest.raises(LabelFileError, match=rf"^{path}: line 4: class 'N/A' appears twice \(first on line 2\)$"):
        read_label_file(path)
    with pytest.raises(LabelFileError, match=r"^x\.txt: line 3: class 'Cat' appears twice \(first on line 1\)$"):
        parse_label_text("cat\ndog\nCat", source="x.txt")


def test_background_other_than_first_is_an_error_naming_the_line():
    with pytest.raises(LabelFileError, match=r"^x\.txt: line 2: 'BACKGROUND'; BACKGROUND may only come first$"):
        parse_label_text("cat\nBACKGROUND\n", source="x.txt")


@pytest.mark.parametrize("text", ["", "\n , \n", "BACKGROUND\n"])
def test_file_without_class_names_is_an_error(tmp_path, text):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(LabelFileError, match=rf"^{path}: the label file holds no class names$"):
        read_label_file(path)


def test_missing_folder_and_binary_files_are_errors_naming_the_path(tmp_path):
    with pytest.raises(LabelFileError, match="no such label file"):
        read_label_file(tmp_path / "absent.txt")
    with pytest.raises(LabelFileError, match="is a folder"):
        read_label_file(tmp_path)
    binary = tmp_path / "model.pth"
    binary.write_bytes(b"\x80\x02\xff\xfe")
    with pytest.raises(LabelFileError, match=rf"^{binary}: not a text file"):
        read_label_file(binary)


def test_written_file_reads_back_and_store_labels_is_the_writer(tmp_path):
    path = tmp_path / "labels.txt"
    store_labels(path, (name for name in ["BACKGROUND", "traffic light", "N/A-12"]))
    assert store_labels is write_label_file
    assert path.read_text() == "BACKGROUND\ntraffic light\nN/A-12\n"
    assert read_label_file(path) == ["BACKGROUND", "traffic light", "N/A-12"]
    assert not (tmp_path / "labels.txt.tmp").exists()

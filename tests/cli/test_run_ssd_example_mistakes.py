"""run_ssd_example.py under a new user's mistakes: bad images in a folder, an --output without an
extension, a checkpoint of another net type, an .onnx without --backend onnx."""
import json

import cv2
import numpy as np
import pytest
import torch

from tests.export.nets import exported_model, label_path, saved_checkpoint
from vision.cli import run_ssd_example
from vision.ssd.registry import create_net

NET = "mb1-ssd-lite"


@pytest.fixture()
def folder(tmp_path):
    """Two good pictures, a 0-byte .jpg and a truncated JPEG."""
    images = tmp_path / "images"
    images.mkdir()
    generator = np.random.default_rng(5)
    for name in ("a.jpg", "b.png"):
        picture = cv2.resize(generator.integers(0, 256, (12, 16, 3), dtype=np.uint8), (160, 120))
        cv2.imwrite(str(images / name), picture)
    (images / "empty.jpg").write_bytes(b"")
    data = (images / "a.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return images


def _run(argv, capsys):
    code = run_ssd_example.main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_unreadable_images_are_skipped_and_the_json_still_written(folder, tmp_path, capsys):
    out_json = tmp_path / "out.json"
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), folder, "--output", tmp_path / "results",
                           "--json", out_json], capsys)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 2
    assert any("empty.jpg" in line and "is empty" in line for line in warnings)
    assert any("truncated.jpg" in line and "truncated JPEG" in line for line in warnings)
    document = json.loads(out_json.read_text())
    assert [image["image"].rsplit("/", 1)[1] for image in document["images"]] == ["a.jpg", "b.png"]
    assert sorted(path.rsplit("/", 1)[1] for path in document["skipped"]) == ["empty.jpg", "truncated.jpg"]


def test_nothing_readable_exits_non_zero_with_one_line(folder, tmp_path, capsys):
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), folder / "empty.jpg",
                           "--output", tmp_path / "x.jpg"], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: none of the 1 images could be read")


@pytest.mark.parametrize("output,expected", [("noext", "noext.jpg"), ("made/", "made/a_ssd.jpg")])
def test_output_without_an_extension_or_a_folder_gets_a_jpg(folder, tmp_path, capsys, output, expected):
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), folder / "a.jpg",
                           "--output", f"{tmp_path}/{output}"], capsys)
    assert code == 0, err
    assert cv2.imread(str(tmp_path / expected)) is not None


def test_an_unwritable_output_is_one_line(folder, tmp_path, capsys):
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), folder / "a.jpg",
                           "--output", tmp_path / "out.xyz"], capsys)
    assert code == 1 and err.strip().startswith(f"error: {tmp_path / 'out.xyz'}: cannot write the image")
    assert len(err.strip().splitlines()) == 1


def test_checkpoint_of_another_net_type_names_it(folder, tmp_path, capsys):
    model = tmp_path / "lite.pth"
    torch.save(create_net("mb1-ssd-lite", 9).state_dict(), model)
    labels = tmp_path / "labels.txt"
    labels.write_text("BACKGROUND\n" + "".join(f"c{i}\n" for i in range(8)))
    code, out, err = _run(["mb2-ssd-lite", model, labels, folder / "a.jpg"], capsys)
    assert code == 1
    assert err.strip() == (f"error: {model}: this checkpoint is a mb1-ssd-lite (9 classes), not a mb2-ssd-lite; "
                           "run with --net mb1-ssd-lite")


def test_an_onnx_file_without_backend_onnx_suggests_it(folder, capsys):
    saved_checkpoint(NET)  # writes the label file too
    model = exported_model(NET, False)
    code, out, err = _run([NET, model, label_path(NET), folder / "a.jpg"], capsys)
    assert code == 1 and err.strip().startswith(f"error: {model}: an ONNX model") and "--backend onnx" in err

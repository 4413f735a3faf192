"""run_ssd_example.py: images in, detections printed, annotated images (and JSON) out."""
import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, photo_dir, photo_path, photo_paths
from tests.export.nets import CLASS_NAMES, exported_model, label_path, saved_checkpoint
from vision.cli import run_ssd_example
from vision.utils.labels import LabelFileError, parse_label_text, read_label_file

NET = "mb1-ssd-lite"
DETECTION_LINE = re.compile(r"^  (cat|dog): (0\.\d\d|1\.00) \[(-?\d+\.\d), (-?\d+\.\d), (-?\d+\.\d), (-?\d+\.\d)\]$")


@pytest.fixture()
def generated_image(tmp_path):
    """A 200x260 picture with two flat shapes on smooth noise."""
    generator = np.random.default_rng(3)
    image = cv2.resize(generator.integers(0, 256, (20, 26, 3), dtype=np.uint8), (260, 200),
                       interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(image, (30, 40), (120, 160), (20, 200, 20), cv2.FILLED)
    cv2.circle(image, (190, 100), 45, (200, 30, 30), cv2.FILLED)
    path = tmp_path / "shapes.png"
    cv2.imwrite(str(path), image)
    return path


def _run(argv, capsys):
    code = run_ssd_example.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_original_call_on_a_generated_image_writes_the_original_output_name(tmp_path, generated_image):
    """``python run_ssd_example.py <net> <model.pth> <labels.txt> <image>``, run as a script from the folder."""
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "run_ssd_example.py"), NET, str(saved_checkpoint(NET)),
                                str(label_path(NET)), str(generated_image), "--prob_threshold", "0.3"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    count = int(re.match(rf"^{re.escape(str(generated_image))}: (\d+) objects", lines[0]).group(1))
    detections = [line for line in lines if DETECTION_LINE.match(line)]
    assert count == len(detections) > 0
    assert all(float(DETECTION_LINE.match(line).group(2)) >= 0.3 for line in detections)
    output = cv2.imread(str(tmp_path / "run_ssd_example_output.jpg"))
    original = cv2.imread(str(generated_image))
    assert output.shape == original.shape
    assert np.abs(output.astype(int) - original).max() > 100  # boxes and captions were drawn


def test_photo_folder_gives_one_result_per_image_and_json(tmp_path, capsys):
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), photo_dir(), "--output", tmp_path / "out",
                           "--json", tmp_path / "detections.json", "--top_k", "3", "--prob_threshold", "0.2"], capsys)
    assert code == 0, err
    photos = photo_paths()
    assert len(photos) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{photo.stem}_ssd.jpg" for photo in photos]
    document = json.loads((tmp_path / "detections.json").read_text())
    assert document["class_names"] == CLASS_NAMES and document["backend"] == "pytorch"
    assert [record["image"] for record in document["images"]] == [str(photo) for photo in photos]
    printed = [line for line in out.splitlines() if DETECTION_LINE.match(line)]
    detections = [d for record in document["images"] for d in record["detections"]]
    assert len(printed) == len(detections) > 0
    for record in document["images"]:
        labels = [d["label"] for d in record["detections"]]
        assert all(labels.count(name) <= 3 for name in CLASS_NAMES)  # --top_k is per class
        for detection in record["detections"]:
            assert detection["score"] > 0.2 and CLASS_NAMES[detection["class_index"]] == detection["label"]
            assert len(detection["box"]) == 4


def test_glob_pattern_writes_stem_ssd_images_into_the_output_folder(tmp_path, capsys, generated_image):
    code, _, err = _run([NET, saved_checkpoint(NET), label_path(NET), str(tmp_path / "*.png"),
                         "--output", tmp_path / "results"], capsys)
    assert code == 0, err
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["shapes_ssd.jpg"]


def test_onnx_backend_gives_the_pytorch_backends_detections(tmp_path, capsys):
    image = photo_path("000138.jpg")
    common = ["--json", None, "--output", tmp_path / "x.jpg", "--prob_threshold", "0.3"]
    results = {}
    for backend, model in (("pytorch", saved_checkpoint(NET)), ("onnx", exported_model(NET, False))):
        common[1] = tmp_path / f"{backend}.json"
        code, _, err = _run([NET, model, label_path(NET), image, "--backend", backend, *common], capsys)
        assert code == 0, err
        results[backend] = json.loads((tmp_path / f"{backend}.json").read_text())["images"][0]["detections"]
    assert [d["label"] for d in results["onnx"]] == [d["label"] for d in results["pytorch"]]
    assert len(results["onnx"]) > 0
    for onnx_detection, torch_detection in zip(results["onnx"], results["pytorch"]):
        assert onnx_detection["score"] == pytest.approx(torch_detection["score"], abs=1e-4)
        assert onnx_detection["box"] == pytest.approx(torch_detection["box"], abs=0.5)


@pytest.mark.parametrize("case,message", [
    ("missing image", "nowhere.jpg: no such image file"),
    ("missing labels", "missing-labels.txt: no such label file"),
    ("empty labels", "empty-labels.txt: the label file holds no class names"),
    ("wrong labels", "checkpoint for 3 classes (layer classification_headers.0.2.bias has 18 outputs), "
                     "but the net expects 21 classes"),
    ("missing model", "nothing.pth: no such checkpoint file"),
    ("onnx with wrong labels", "voc-model-labels.txt: 21 classes, but"),
    ("onnx of another net", "exported from mb1-ssd-lite, not mb1-ssd"),
])
def test_bad_inputs_are_one_line_errors_without_traceback(tmp_path, capsys, case, message):
    (tmp_path / "empty-labels.txt").write_text("\n\n")
    image = photo_path("gun.jpg")
    net, model, labels, backend = NET, saved_checkpoint(NET), label_path(NET), "pytorch"
    if case == "missing image":
        image = tmp_path / "nowhere.jpg"
    elif case in ("missing labels", "empty labels"):
        labels = tmp_path / ("missing-labels.txt" if case == "missing labels" else "empty-labels.txt")
    elif case == "wrong labels":
        labels = REPO_ROOT / "models" / "voc-model-labels.txt"
    elif case == "missing model":
        model = tmp_path / "nothing.pth"
    elif case == "onnx with wrong labels":
        model, labels, backend = exported_model(NET, False), REPO_ROOT / "models" / "voc-model-labels.txt", "onnx"
    elif case == "onnx of another net":
        model, net, backend = exported_model(NET, False), "mb1-ssd", "onnx"
    code, out, err = _run([net, model, labels, image, "--backend", backend, "--output", tmp_path / "o.jpg"], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "o.jpg").exists()


def test_label_file_forms():
    assert parse_label_text("BACKGROUND\ncat\ndog\n\n") == CLASS_NAMES
    assert parse_label_text("cat, dog") == CLASS_NAMES  # the original's comma form, without BACKGROUND
    assert read_label_file(REPO_ROOT / "models" / "voc-model-labels.txt")[:2] == ["BACKGROUND", "aeroplane"]
    with pytest.raises(LabelFileError, match="appears twice"):
        parse_label_text("cat\ndog\nCat", source="x.txt")
    with pytest.raises(LabelFileError, match="x.txt: the label file holds no class names"):
        parse_label_text("BACKGROUND\n", source="x.txt")


def test_single_output_path_in_a_new_folder_is_created(tmp_path, capsys, generated_image):
    output = tmp_path / "new" / "folder" / "result.jpg"
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), generated_image, "--output", output], capsys)
    assert code == 0, err
    assert cv2.imread(str(output)).shape == cv2.imread(str(generated_image)).shape
    assert f"The output image is {output}" in out

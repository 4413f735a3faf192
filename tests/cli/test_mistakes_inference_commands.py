"""eval_ssd.py, run_ssd_example.py and run_ssd_live_demo.py under a new user's mistakes (issue 21): each run
as the user types it, checking the exit status, the one-line message, that no traceback appears, that no
file the user had changed and that no temporary file is left. Also: every predictor clips its boxes to the
image, and a .pth given with --backend onnx is named."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.cli.mistakes import error_lines, file_hashes, run_main, temporaries
from tests.export.test_fair_checks import _postprocess_only
from vision.cli import eval_ssd, run_ssd_example, run_ssd_live_demo
from vision.datasets.synthetic import generate_voc_dataset
from vision.export.metadata import BOXES_NAME, SCORES_NAME
from vision.export.onnx_predictor import OnnxPredictor
from vision.ssd.predictor import Predictor
from vision.ssd.registry import create_net
from vision.ssd.sidecar import write_sidecar

NET = "mb1-ssd-lite"
CLASSES = ["BACKGROUND", "circle", "square", "triangle", "star", "ring"]
SIZE = (160, 160)  # recorded in the sidecar, so every script runs the model small and fast


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    generate_voc_dataset(root, num_images=4, num_test=2, seed=1, width=160, height=120)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """An untrained mb1-ssd-lite for CLASSES with its sidecar (160x160) and labels.txt beside it."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    path = folder / f"{NET}.pth"
    torch.save(create_net(NET, len(CLASSES), image_size=SIZE).state_dict(), path)
    write_sidecar(path, NET, SIZE, CLASSES)
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for index in range(5):
        writer.write(np.full((120, 160, 3), 40 * index, np.uint8))
    writer.release()
    return path


def _eval(argv, capsys):
    return run_main(eval_ssd.main, ["--net", NET, "--num_workers", "0", "--device", "cpu"] + list(argv), capsys)


def _labels(model: Path) -> Path:
    return model.parent / "labels.txt"


def _image(voc: Path) -> Path:
    return voc / "JPEGImages" / "000000.jpg"


# -- 3: a label file that contradicts the checkpoint ----------------------------------------------------
def test_label_file_in_another_order_than_the_sidecar_stops_showing_both_lists(voc, model, tmp_path, capsys):
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("BACKGROUND\nsquare\ncircle\ntriangle\nstar\nring\n")
    before = file_hashes(voc, model.parent, swapped)
    code, out, err = _eval(["--trained_model", model, "--dataset", voc, "--label_file", swapped,
                            "--eval_dir", tmp_path / "eval"], capsys)
    (line,) = error_lines(err)
    assert code == 1 and str(swapped) in line and f"{model}.json" in line
    assert "['BACKGROUND', 'square', 'circle'" in line and "['BACKGROUND', 'circle', 'square'" in line
    assert "Average Precision" not in out and not (tmp_path / "eval").exists()
    code, out, err = run_main(run_ssd_example.main, [NET, model, swapped, _image(voc), "--output", tmp_path / "o.jpg"],
                              capsys)
    (line,) = error_lines(err)
    assert code == 1 and "records that the model was trained on" in line and not (tmp_path / "o.jpg").exists()
    assert file_hashes(voc, model.parent, swapped) == before and not temporaries(tmp_path, voc, model.parent)


def test_without_a_sidecar_the_label_file_is_believed_as_before(voc, model, tmp_path, capsys):
    bare = tmp_path / "bare.pth"
    shutil.copy(model, bare)  # no .pth.json beside it: the original toolkit's format
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("BACKGROUND\nsquare\ncircle\ntriangle\nstar\nring\n")
    code, out, err = run_main(run_ssd_example.main, [NET, bare, swapped, _image(voc), "--output", tmp_path / "o.jpg",
                                                     "--resolution", "160", "--prob_threshold", "0.01"], capsys)
    assert code == 0 and (tmp_path / "o.jpg").is_file(), err


# -- 5: a VOC root without test.txt ----------------------------------------------------------------------
def test_evaluating_a_root_without_test_txt_names_the_training_split_and_warns(voc, model, tmp_path, capsys):
    root = tmp_path / "voc"
    shutil.copytree(voc, root)
    (root / "ImageSets" / "Main" / "test.txt").unlink()
    before = file_hashes(root, model.parent)
    code, out, err = _eval(["--trained_model", model, "--dataset", root, "--eval_dir", tmp_path / "eval"], capsys)
    assert code == 0, err
    assert f"evaluating the trainval split of {root} (4 images)" in err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "no test split" in warning[0] and "training reads too" in warning[0]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["split"] == "trainval" and summary["split_is_training_data"] is True
    assert file_hashes(root, model.parent) == before and not temporaries(tmp_path)


def test_the_test_split_is_named_without_a_warning(voc, model, tmp_path, capsys):
    code, out, err = _eval(["--trained_model", model, "--dataset", voc, "--eval_dir", tmp_path / "eval"], capsys)
    assert code == 0 and f"evaluating the test split of {voc} (2 images)" in err and "warning:" not in err
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["split"] == "test" and summary["split_is_training_data"] is False


# -- 9: a --device this machine does not have --------------------------------------------------------------
@pytest.mark.parametrize("device,words", [("cuda:99", "--device cuda:99: "),
                                          ("gpu", "--device gpu: not a device name")])
@pytest.mark.parametrize("script", ["eval", "example", "demo"])
def test_a_device_this_machine_lacks_is_one_line(voc, model, video, tmp_path, capsys, script, device, words):
    if script == "eval":
        argv = ["--net", NET, "--trained_model", model, "--dataset", voc, "--eval_dir", tmp_path / "eval"]
        main = eval_ssd.main
    elif script == "example":
        argv, main = [NET, model, _labels(model), _image(voc), "--output", tmp_path / "o.jpg"], run_ssd_example.main
    else:
        argv = [NET, model, _labels(model), video, "--headless", "--output", tmp_path / "o.mp4"]
        main = run_ssd_live_demo.main
    before = file_hashes(voc, model.parent, video)
    code, out, err = run_main(main, argv + ["--device", device], capsys)
    (line,) = error_lines(err)
    assert code == 1 and words in line
    if device == "cuda:99":
        assert ("this machine has" if torch.cuda.is_available() else "CUDA is not available on this machine") in line
    assert not (tmp_path / "eval").exists() and not (tmp_path / "o.jpg").exists() and not (tmp_path / "o.mp4").exists()
    assert file_hashes(voc, model.parent, video) == before and not temporaries(tmp_path)


# -- 10: an --eval_dir that cannot be written --------------------------------------------------------------
def test_an_eval_dir_that_is_a_file_fails_before_the_inference(voc, model, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, out, err = _eval(["--trained_model", model, "--dataset", voc, "--eval_dir", notes], capsys)
    (line,) = error_lines(err)
    assert code == 1 and line == f"error: --eval_dir {notes}: is a file, not a folder"
    assert "eval:" not in err and "Average Precision" not in out  # no image was evaluated
    assert notes.read_text() == "mine" and not temporaries(tmp_path)


def test_an_eval_dir_below_a_file_fails_before_the_inference(voc, model, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    code, out, err = _eval(["--trained_model", model, "--dataset", voc, "--eval_dir", notes / "eval"], capsys)
    (line,) = error_lines(err)
    assert code == 1 and f"--eval_dir {notes / 'eval'}: cannot be created" in line and "is a file" in line
    assert "Average Precision" not in out and notes.read_text() == "mine" and not temporaries(tmp_path)


def test_the_ap_table_is_printed_even_when_a_result_file_cannot_be_written(voc, model, tmp_path, capsys):
    eval_dir = tmp_path / "eval"
    (eval_dir / "summary.json").mkdir(parents=True)  # a folder where the summary goes
    (eval_dir / "summary.json" / "keep.txt").write_text("mine")
    code, out, err = _eval(["--trained_model", model, "--dataset", voc, "--eval_dir", eval_dir], capsys)
    assert code == 1 and "Average Precision Across All Classes" in out
    (line,) = error_lines(err)
    assert "summary.json" in line and "is a folder" in line and "the results above were not saved" in line
    assert (eval_dir / "summary.json" / "keep.txt").read_text() == "mine" and not temporaries(tmp_path)


# -- 14: --max_frames -1 ---------------------------------------------------------------------------------
def test_negative_max_frames_is_refused_and_stopping_early_drops_no_frame(model, video, tmp_path, capsys):
    argv = [NET, model, _labels(model), video, "--headless", "--output", tmp_path / "out.mp4"]
    code, out, err = run_main(run_ssd_live_demo.main, argv + ["--max_frames", "-1"], capsys)
    assert code == 2 and "--max_frames: expected 0 or more, got -1" in err and not (tmp_path / "out.mp4").exists()
    code, out, err = run_main(run_ssd_live_demo.main, argv + ["--max_frames", "2"], capsys)
    assert code == 0, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("2 frames in") and "dropped" not in summary
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    capture.release()


# -- 16: --iou_threshold outside (0, 1] ------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1.5", "0", "-0.5"])
def test_iou_threshold_outside_0_to_1_is_refused(voc, model, tmp_path, capsys, value):
    code, out, err = _eval(["--trained_model", model, "--dataset", voc, "--iou_threshold", value,
                            "--eval_dir", tmp_path / "eval"], capsys)
    assert code == 2 and f"--iou_threshold: expected a value in (0, 1], got {value}" in err
    assert not (tmp_path / "eval").exists()


# -- 18: run_ssd_example.py --json <folder> -------------------------------------------------------------
def test_json_into_a_folder_is_one_line_before_any_work_and_leaves_nothing(voc, model, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "old.json").write_text("{}")
    before = file_hashes(folder, voc, model.parent)
    code, out, err = run_main(run_ssd_example.main, [NET, model, _labels(model), _image(voc), "--json", folder,
                                                     "--output", tmp_path / "o.jpg"], capsys)
    (line,) = error_lines(err)
    assert code == 1 and line == f"error: --json {folder}: is a folder, not a file"
    assert not (tmp_path / "o.jpg").exists() and "objects" not in out
    assert file_hashes(folder, voc, model.parent) == before and not temporaries(tmp_path)
    assert sorted(path.name for path in folder.iterdir()) == ["old.json"]


# -- 22: the live demo's --output without an extension ----------------------------------------------------
# OpenCV logs to the process's file descriptor 2, past sys.stderr: capfd, not capsys, sees its WARN lines.
def test_demo_output_without_an_extension_gets_mp4_as_the_example_gets_jpg(model, video, tmp_path, capfd):
    code, out, err = run_main(run_ssd_live_demo.main, [NET, model, _labels(model), video, "--headless",
                                                       "--output", tmp_path / "annotated"], capfd)
    assert code == 0, err
    assert f"wrote {tmp_path / 'annotated.mp4'}" in out and "WARN" not in out + err
    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["annotated.mp4"]


def test_demo_output_opencv_cannot_write_is_one_line_without_opencv_logs(model, video, tmp_path, capfd,
                                                                        monkeypatch):
    # OpenCV logs its WARN lines here only when the staged name holds no digit (with one, its image-sequence
    # writer takes the name as a pattern and fails silently): letters-only temporary names make it log always.
    monkeypatch.setattr(tempfile._RandomNameSequence, "characters", "abcdefghijklmnopqrstuvwxyz_")
    code, out, err = run_main(run_ssd_live_demo.main, [NET, model, _labels(model), video, "--headless",
                                                       "--output", tmp_path / "annotated.xyz"], capfd)
    (line,) = error_lines(err)
    assert code == 1 and "OpenCV cannot write this video" in line and "WARN" not in out + err
    assert list(tmp_path.iterdir()) == []


# -- expected: a .pth with --backend onnx ----------------------------------------------------------------
def test_a_pytorch_checkpoint_with_backend_onnx_says_drop_it(voc, model, tmp_path, capsys):
    expected = f"error: {model}: this is a PyTorch checkpoint, not an ONNX model: drop --backend onnx"
    code, out, err = run_main(run_ssd_example.main, [NET, model, _labels(model), _image(voc), "--backend", "onnx",
                                                     "--output", tmp_path / "o.jpg"], capsys)
    assert code == 1 and error_lines(err) == [expected]
    code, out, err = _eval(["--trained_model", model, "--dataset", voc, "--backend", "onnx",
                            "--label_file", _labels(model), "--eval_dir", tmp_path / "eval"], capsys)
    assert code == 1 and error_lines(err) == [expected]


# -- expected: boxes clipped to the image --------------------------------------------------------------
# One detection per class whose box reaches outside the image on every side.
OUTSIDE = np.array([[[-0.25, -0.5, 1.5, 1.25], [0.1, 0.1, 0.2, 0.2]]], dtype=np.float32)
SCORES = np.array([[[0.1, 0.9], [0.2, 0.8]]], dtype=np.float32)


def test_the_pytorch_predictor_clips_boxes_to_the_image_and_forward_stays_raw():
    torch.manual_seed(0)
    predictor = Predictor(create_net(NET, 2, is_test=True), 300)
    (boxes, labels, _), = predictor.postprocess(torch.from_numpy(SCORES), torch.from_numpy(OUTSIDE), [(10000, 8000)])
    assert labels.tolist() == [1, 1]
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 8000.0, 10000.0], [800.0, 1000.0, 1600.0, 2000.0]]))
    # The raw API: forward() gives the net's boxes (corner form 0..1) as they are, past the image's edges;
    # the predicted boxes of the same image are clipped to it (100 high, 80 wide).
    image = np.full((100, 80, 3), 128, np.uint8)
    _, raw = predictor.forward(predictor.preprocess([image]))
    assert raw.min() < 0 and raw.max() > 1
    (boxes, _, _), = predictor.predict_batch([image], prob_threshold=0.01)
    assert len(boxes) and boxes.min() == 0 and boxes[:, 0::2].max() == 80 and boxes[:, 1::2].max() == 100


def test_the_onnx_predictor_clips_boxes_of_a_plain_export():
    predictor = object.__new__(OnnxPredictor)  # postprocess alone: its selection settings, no session
    predictor.has_postprocess, predictor.filter_threshold, predictor.candidate_size = False, 0.01, 200
    predictor.iou_threshold = 0.45
    (boxes, labels, _), = predictor.postprocess({SCORES_NAME: SCORES, BOXES_NAME: OUTSIDE}, [(10000, 8000)])
    np.testing.assert_allclose(boxes, [[0, 0, 8000, 10000], [800, 1000, 1600, 2000]], rtol=1e-6)


def test_the_onnx_postprocess_graph_clips_boxes():
    found = _postprocess_only(2, 2, 200)(SCORES, OUTSIDE)
    np.testing.assert_allclose(found[BOXES_NAME], [[0, 0, 1, 1], [0.1, 0.1, 0.2, 0.2]], rtol=1e-6)

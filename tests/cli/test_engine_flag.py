"""``--engine`` of eval_ssd.py, run_ssd_example.py and run_ssd_live_demo.py (vision/cli/flags.py): parsed into the
settings, passed to the predictor, and the CPU engine's detections are eager's."""
import json

import pytest

from tests.export.nets import label_path, saved_checkpoint
from vision.cli import eval_ssd, run_ssd_example, run_ssd_live_demo
from vision.cli.flags import ENGINE_NAMES
from vision.runtime.detector import load_detector
from vision.ssd import engines

NET = "mb1-ssd-lite"


def test_flag_choices_are_the_engines():
    assert ENGINE_NAMES == engines.ENGINES


def test_each_command_parses_engine_into_its_settings():
    model, labels = str(saved_checkpoint(NET)), str(label_path(NET))
    example = run_ssd_example.ExampleSettings.from_args(
        run_ssd_example.build_parser().parse_args([NET, model, labels, "x.jpg", "--engine", "eager"]))
    live = run_ssd_live_demo.LiveDemoSettings.from_args(
        run_ssd_live_demo.build_parser().parse_args([NET, model, labels, "clip.mp4", "--engine", "torchscript"]))
    evaluation = eval_ssd.eval_settings(eval_ssd.build_parser().parse_args(
        ["--net", NET, "--trained_model", model, "--dataset", "data", "--device", "cpu"]))
    assert (example.engine, live.engine, evaluation.engine) == ("eager", "torchscript", "auto")
    with pytest.raises(SystemExit):
        run_ssd_example.build_parser().parse_args([NET, model, labels, "x.jpg", "--engine", "tensorrt"])


def test_detector_passes_the_engine_and_an_expected_count(tmp_path):
    detector = load_detector(NET, str(saved_checkpoint(NET)), str(label_path(NET)), device="cpu", engine="eager")
    assert detector.predictor.engine == "eager" and detector.predictor.net_type == NET
    lines = []
    auto = load_detector(NET, str(saved_checkpoint(NET)), str(label_path(NET)), device="cpu",
                         engine_report=lines.append)
    auto.predictor.engine_cache_folder = str(tmp_path)
    auto.expect_images(1)
    assert auto.predictor.selected_engine() == "eager"  # one image does not pay for a build
    auto.expect_images(None)  # a camera
    assert auto.predictor.selected_engine() == engines.auto_engine(NET)


def test_example_with_an_engine_prints_its_build_once_and_finds_eager_detections(tmp_path, capsys, monkeypatch):
    from tests.conftest import photo_path

    monkeypatch.setenv("SSD_ENGINE_CACHE", str(tmp_path / "cache"))
    images = [str(photo_path())] * 3
    results = {}
    for engine in ("eager", "onnxruntime"):
        output = tmp_path / f"{engine}.json"
        code = run_ssd_example.main([NET, str(saved_checkpoint(NET)), str(label_path(NET)), *images, "--device", "cpu",
                                     "--output", str(tmp_path / engine), "--json", str(output), "--engine", engine,
                                     "--prob_threshold", "0.2"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        results[engine] = json.loads(output.read_text())["images"]
        built = [line for line in captured.err.splitlines() if line.startswith("engine:")]
        assert len(built) == (1 if engine == "onnxruntime" else 0), captured.err
    for eager_image, engine_image in zip(results["eager"], results["onnxruntime"]):
        assert [d["label"] for d in eager_image["detections"]] == [d["label"] for d in engine_image["detections"]]
        for eager_detection, engine_detection in zip(eager_image["detections"], engine_image["detections"]):
            assert abs(eager_detection["score"] - engine_detection["score"]) <= 1e-5

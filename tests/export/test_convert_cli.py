"""convert_to_caffe2_models.py: the original's call, checks printed, failures leave no file."""
import json
import subprocess
import sys
import types

import pytest

from tests.conftest import REPO_ROOT
from tests.export.nets import CLASS_NAMES, label_path, saved_checkpoint
from vision.cli import convert_to_caffe2_models
from vision.export.checks import CheckResult
from vision.export.onnx_predictor import OnnxPredictor
from vision.export.pipeline import ExportRequest, ExportResult, export_model


def _convert(argv, capsys):
    code = convert_to_caffe2_models.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_original_call_writes_models_net_onnx_with_side_files_and_reports_checks(tmp_path):
    """Run as the original is run, from a checkout: ``python convert_to_caffe2_models.py <net> <pth> <labels>``."""
    checkpoint, labels = saved_checkpoint("mb1-ssd"), label_path("mb1-ssd")
    completed = subprocess.run([sys.executable, str(REPO_ROOT / "convert_to_caffe2_models.py"), "mb1-ssd",
                                str(checkpoint), str(labels)], cwd=tmp_path, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert any(line.startswith("ONNX Runtime: ok, max abs difference") for line in lines)
    assert any(line.startswith("OpenCV DNN") and ": ok" in line for line in lines)
    caffe2_lines = [line for line in lines if "Caffe2" in line]
    assert len(caffe2_lines) == 1 and "caffe2 cannot be imported" in caffe2_lines[0]
    written = sorted(path.name for path in (tmp_path / "models").iterdir())
    assert written == ["mb1-ssd.json", "mb1-ssd.labels.txt", "mb1-ssd.onnx"]
    assert not list(tmp_path.glob("models/*.pb"))  # no fake Caffe2 output
    assert json.loads((tmp_path / "models" / "mb1-ssd.json").read_text())["class_names"] == CLASS_NAMES


def test_with_postprocess_and_dynamic_batch_to_an_output_path(tmp_path, capsys):
    output = tmp_path / "deploy" / "detector.onnx"
    code, out, err = _convert(["sq-ssd-lite", str(saved_checkpoint("sq-ssd-lite")), str(label_path("sq-ssd-lite")),
                               "--output", str(output), "--with_postprocess", "--dynamic_batch", "--opset", "11"],
                              capsys)
    assert code == 0, err
    assert "ONNX Runtime postprocess: ok" in out and "OpenCV" not in out  # checked in ONNX Runtime only
    info = json.loads((tmp_path / "deploy" / "detector.json").read_text())
    assert info["postprocess"]["candidate_size"] == 200 and info["dynamic_batch"] and info["opset"] == 11
    assert sorted(p.name for p in output.parent.iterdir()) == ["detector.json", "detector.labels.txt", "detector.onnx"]


def test_a_failed_check_says_failed_exits_non_zero_and_keeps_the_file_aside(tmp_path, capsys, monkeypatch):
    import vision.export.checks as checks

    monkeypatch.setattr(checks, "check_onnxruntime",
                        lambda path, net: CheckResult("ONNX Runtime", False, "max abs difference 3.0e-03", 3e-3))
    output = tmp_path / "bad.onnx"
    code, out, err = _convert(["sq-ssd-lite", str(saved_checkpoint("sq-ssd-lite")), str(label_path("sq-ssd-lite")),
                               "--output", str(output)], capsys)
    assert code == 1
    assert "ONNX Runtime: FAILED" in out
    kept = tmp_path / "bad.FAILED.onnx"
    assert err.strip() == (f"error: {output}: not written, the check FAILED "
                           "(ONNX Runtime: max abs difference 3.0e-03); "
                           f"the exported file is kept as {kept} for inspection")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.FAILED.json", "bad.FAILED.labels.txt", "bad.FAILED.onnx"]
    assert OnnxPredictor(kept).metadata.net_type == "sq-ssd-lite"  # a complete file the user can inspect


def test_caffe2_files_are_written_when_caffe2_is_importable(tmp_path, capsys, monkeypatch):
    class FakeNet:
        def __init__(self, name):
            self.name = name

        def SerializeToString(self):
            return self.name.encode()

        def __str__(self):
            return f"name: {self.name!r}"

    class FakeBackend:
        @staticmethod
        def onnx_graph_to_caffe2_net(model):
            assert model.graph.output[0].name == "scores"
            return FakeNet("init"), FakeNet("predict")

    backend_module = types.ModuleType("caffe2.python.onnx.backend")
    backend_module.Caffe2Backend = FakeBackend
    for name in ("caffe2", "caffe2.python", "caffe2.python.onnx"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "caffe2.python.onnx.backend", backend_module)
    code, out, err = _convert(["sq-ssd-lite", str(saved_checkpoint("sq-ssd-lite")), str(label_path("sq-ssd-lite")),
                               "--output", str(tmp_path / "sq-ssd-lite.onnx")], capsys)
    assert code == 0, err
    assert (tmp_path / "sq-ssd-lite_init_net.pb").read_bytes() == b"init"
    assert (tmp_path / "sq-ssd-lite_predict_net.pbtxt").read_text() == "name: 'predict'"
    assert "Wrote the Caffe2 model" in out


@pytest.mark.parametrize("labels,message", [
    ("voc", "checkpoint for 3 classes (layer classification_headers.0.bias has 18 outputs), "
            "but the net expects 21 classes"),
    ("missing", "no such label file"),
])
def test_wrong_or_missing_label_file_is_one_line_without_traceback(tmp_path, capsys, labels, message):
    label_file = REPO_ROOT / "models" / "voc-model-labels.txt" if labels == "voc" else tmp_path / "nothing.txt"
    code, out, err = _convert(["mb1-ssd", str(saved_checkpoint("mb1-ssd")), str(label_file),
                               "--output", str(tmp_path / "x.onnx")], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_unknown_net_type_and_impossible_opset_are_clear_errors(tmp_path, capsys):
    code, _, err = _convert(["mb9-ssd", str(saved_checkpoint("mb1-ssd")), str(label_path("mb1-ssd"))], capsys)
    assert code == 1 and "unknown net type 'mb9-ssd'" in err
    code, _, err = _convert(["mb1-ssd", str(saved_checkpoint("mb1-ssd")), str(label_path("mb1-ssd")),
                             "--exporter", "torchscript", "--opset", "19"], capsys)
    assert code == 1 and "11-17" in err


def test_the_pipeline_runs_from_python_reports_through_its_callable_and_clears_stale_temporaries(tmp_path, capsys):
    stale = tmp_path / ".m.onnx.tmp-abc123"  # what a killed export leaves
    stale.write_bytes(b"partial")
    lines = []
    request = ExportRequest("sq-ssd-lite", str(saved_checkpoint("sq-ssd-lite")), tuple(CLASS_NAMES),
                            output=str(tmp_path / "m.onnx"))
    result = export_model(request, report=lines.append)
    assert result == ExportResult(str(tmp_path / "m.onnx"))
    assert capsys.readouterr().out == ""
    assert lines[0].startswith("Exported sq-ssd-lite at 300x300 (3 classes") and "Caffe2" in lines[-1]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.json", "m.labels.txt", "m.onnx"]

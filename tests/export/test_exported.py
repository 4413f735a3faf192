"""Opening an exported model (vision.export.exported) and eval_ssd.py --backend onnx: any exported file
evaluates with the .pth's metrics and outputs."""
import json

import pytest

from tests.export.nets import CLASS_NAMES, exported_model, realistic_net
from vision.cli import eval_ssd
from vision.datasets.synthetic import generate_voc_dataset
from vision.export.exported import describe_precision, input_size_of, onnx_providers, open_exported_model
from vision.export.onnx_export import export_onnx
from vision.export.quantize import choose_calibration_images, quantize_onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A synthetic VOC root, a 6-class mb1-ssd-lite saved as .pth, its plain float32 export, its NMS-graph
    export and that one's INT8 file."""
    folder = tmp_path_factory.mktemp("exported-eval")
    root = folder / "shapes"
    generate_voc_dataset(root, num_images=4, num_test=6, seed=5)
    class_names = ["BACKGROUND", *(root / "labels.txt").read_text().split()]
    labels = folder / "labels.txt"
    labels.write_text("".join(f"{name}\n" for name in class_names))
    net = realistic_net("mb1-ssd-lite", len(class_names))
    net.save(str(folder / "model.pth"))
    plain, graph = folder / "model.onnx", folder / "model-nms.onnx"
    export_onnx(net, "mb1-ssd-lite", class_names, plain, dynamic_batch=True)
    export_onnx(net, "mb1-ssd-lite", class_names, graph, with_postprocess=True)
    quantize_onnx(graph, folder / "model-nms.int8.onnx", choose_calibration_images(root, 4))
    return folder, root, labels


def _evaluate(folder, root, model, *flags):
    eval_dir = folder / f"eval-{model}"
    code = eval_ssd.main(["--net", "mb1-ssd-lite", "--trained_model", str(folder / model), "--dataset", str(root),
                          "--eval_dir", str(eval_dir), "--device", "cpu", *flags])
    assert code == 0
    return json.loads((eval_dir / "summary.json").read_text()), sorted(path.name for path in eval_dir.iterdir())


def test_plain_float32_export_scores_as_the_pth(exported, capsys):
    folder, root, labels = exported
    pth_summary, pth_files = _evaluate(folder, root, "model.pth", "--label_file", str(labels))
    # The labels come from model.labels.txt.
    onnx_summary, onnx_files = _evaluate(folder, root, "model.onnx", "--backend", "onnx")
    assert onnx_files == pth_files
    assert pth_summary["num_detections"] > 0
    assert abs(onnx_summary["mean_ap"] - pth_summary["mean_ap"]) <= 1e-4
    for name, ap in pth_summary["per_class_ap"].items():
        assert onnx_summary["per_class_ap"][name] == pytest.approx(ap, abs=1e-4, nan_ok=True)
    assert onnx_summary["backend"] == "onnx" and onnx_summary["precision"] == "float32"
    # The per-class diagnosis works from the gathered records, so the ONNX backend writes it too.
    assert {"confusion_matrix.csv", "confusion_matrix.png"} <= set(onnx_files)
    assert onnx_summary["confusion_threshold"] == pth_summary["confusion_threshold"] == 0.5
    for name, entry in pth_summary["per_class"].items():
        assert onnx_summary["per_class"][name]["num_ground_truth"] == entry["num_ground_truth"]
    assert abs(onnx_summary["num_detections"] - pth_summary["num_detections"]) <= 0.01 * pth_summary["num_detections"]
    assert "Average Precision Across All Classes" in capsys.readouterr().out


def test_int8_nms_graph_file_evaluates_with_the_same_outputs(exported):
    folder, root, labels = exported
    summary, files = _evaluate(folder, root, "model-nms.int8.onnx", "--backend", "onnx", "--onnx_threads", "1")
    assert summary["precision"].startswith("INT8 (minmax") and summary["with_postprocess"] is True
    assert summary["onnx_threads"] == 1 and summary["num_images"] == 6
    assert "summary.json" in files and any(name.startswith("det_test_") for name in files)


def test_onnx_backend_errors_are_one_line(exported, capsys):
    folder, root, labels = exported
    code = eval_ssd.main(["--net", "mb2-ssd-lite", "--trained_model", str(folder / "model.onnx"),
                          "--dataset", str(root), "--backend", "onnx", "--eval_dir", str(folder / "bad")])
    assert code == 1
    assert capsys.readouterr().err == f"error: {folder / 'model.onnx'}: exported from mb1-ssd-lite, not mb2-ssd-lite\n"
    code = eval_ssd.main(["--trained_model", str(folder / "model.onnx"), "--dataset", str(root), "--backend", "onnx",
                          "--nms_method", "soft", "--eval_dir", str(folder / "bad")])
    assert code == 1 and "hard NMS only" in capsys.readouterr().err


def test_open_exported_model_checks_size_net_type_and_classes_in_that_order():
    model = exported_model("mb1-ssd-lite", False)
    predictor = open_exported_model(model, CLASS_NAMES, net_type="mb1-ssd-lite", device="cpu", resolution="300")
    assert predictor.class_names == CLASS_NAMES and input_size_of(predictor) == [300, 300]
    assert describe_precision(predictor) == "float32"
    with pytest.raises(ValueError, match="exported at 300x300, not 512x512; export again with --resolution 512"):
        open_exported_model(model, ["BACKGROUND"], net_type="mb2-ssd-lite", resolution="512")
    with pytest.raises(ValueError, match=f"{model}: exported from mb1-ssd-lite, not mb2-ssd-lite"):
        open_exported_model(model, ["BACKGROUND"], net_type="mb2-ssd-lite")


def test_a_class_count_mismatch_names_the_label_file_when_there_is_one():
    model = exported_model("mb1-ssd-lite", False)
    with pytest.raises(ValueError, match="labels.txt: 2 classes, but .* has 3; check the label file"):
        open_exported_model(model, ["BACKGROUND", "cat"], label_path="labels.txt")
    with pytest.raises(ValueError, match="exported for 3 classes, but the labels give 2; pass the model's label file"):
        open_exported_model(model, ["BACKGROUND", "cat"])


def test_onnx_providers_for_a_device():
    assert onnx_providers("cpu") == (["CPUExecutionProvider"], "cpu")
    with pytest.raises(ValueError, match="runs on cpu or cuda"):
        onnx_providers("mps")

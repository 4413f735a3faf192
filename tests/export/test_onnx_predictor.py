"""OnnxPredictor: the PyTorch predictor's results from an exported file, without importing torch."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, photo_path
from tests.export.nets import CLASS_NAMES, cached_net, exported_model, rgb_photo
from vision.export.checks import sample_images
from vision.export.onnx_predictor import OnnxModelError, OnnxPredictor, greedy_nms, select_detections
from vision.ssd.registry import create_predictor


def _assert_same_detections(actual, expected, image):
    boxes, labels, probs = actual
    expected_boxes, expected_labels, expected_probs = (t.numpy() for t in expected)
    assert isinstance(boxes, np.ndarray) and boxes.dtype == np.float32 and boxes.shape == expected_boxes.shape
    assert labels.dtype == np.int64 and probs.dtype == np.float32
    assert labels.tolist() == expected_labels.tolist()
    np.testing.assert_allclose(probs, expected_probs, atol=1e-4)
    scale = np.array([image.shape[1], image.shape[0]] * 2, dtype=np.float32)
    np.testing.assert_allclose(boxes / scale, expected_boxes / scale, atol=1e-3)


@pytest.mark.parametrize("net_type,dynamic_batch", [("mb1-ssd", False), ("mb2-ssd-lite", True), ("sq-ssd-lite", True)])
def test_plain_export_gives_the_pytorch_predictors_results(net_type, dynamic_batch):
    onnx_predictor = OnnxPredictor(exported_model(net_type, dynamic_batch))
    assert not onnx_predictor.has_postprocess and onnx_predictor.class_names == CLASS_NAMES
    predictor = create_predictor(net_type, cached_net(net_type))
    images = [rgb_photo(), *sample_images(2), np.ascontiguousarray(rgb_photo("gun.jpg")[:150, :400])]
    for top_k, prob_threshold in [(-1, None), (10, 0.4), (2, 0.1)]:
        for image in images[:2]:
            _assert_same_detections(onnx_predictor.predict(image, top_k=top_k, prob_threshold=prob_threshold),
                                    predictor.predict(image, top_k=top_k, prob_threshold=prob_threshold), image)
        batched = onnx_predictor.predict_batch(images, top_k=top_k, prob_threshold=prob_threshold)
        expected = predictor.predict_batch(images, top_k=top_k, prob_threshold=prob_threshold)
        assert len(batched) == len(images)
        for image, actual, reference in zip(images, batched, expected):
            _assert_same_detections(actual, reference, image)


def test_no_detection_gives_empty_arrays_of_the_right_shape():
    for path in (exported_model("mb1-ssd", False), exported_model("mb1-ssd", True, with_postprocess=True)):
        boxes, labels, probs = OnnxPredictor(path).predict(rgb_photo(), prob_threshold=0.9999)
        assert boxes.shape == (0, 4) and boxes.dtype == np.float32
        assert labels.shape == (0,) and labels.dtype == np.int64 and probs.shape == (0,)
    assert OnnxPredictor(exported_model("mb1-ssd", False)).predict_batch([]) == []


def test_predictor_rejects_a_non_rgb_uint8_image():
    predictor = OnnxPredictor(exported_model("mb1-ssd", False))
    with pytest.raises(ValueError, match=r"image 0: expected an RGB uint8 array"):
        predictor.predict(np.zeros((10, 10), np.uint8))


def test_importing_and_running_it_never_imports_torch():
    """A deployment without PyTorch: torch and torchvision imports fail in the child process."""
    path = exported_model("mb1-ssd", False)
    postprocess_path = exported_model("mb1-ssd", True, with_postprocess=True)
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision"):
                    raise ImportError("torch is not installed here")
        sys.meta_path.insert(0, NoTorch())
        import cv2
        from vision.export.onnx_predictor import OnnxPredictor
        image = cv2.cvtColor(cv2.imread({str(photo_path("000138.jpg"))!r}), cv2.COLOR_BGR2RGB)
        results = {{}}
        for name, path in (("plain", {str(path)!r}), ("postprocess", {str(postprocess_path)!r})):
            boxes, labels, probs = OnnxPredictor(path).predict(image, top_k=5, prob_threshold=0.3)
            results[name] = {{"boxes": boxes.tolist(), "labels": labels.tolist(), "probs": probs.tolist()}}
        results["torch_imported"] = "torch" in sys.modules
        print(json.dumps(results))
    """)
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)
    assert results["torch_imported"] is False
    expected = create_predictor("mb1-ssd", cached_net("mb1-ssd")).predict(rgb_photo(), top_k=5, prob_threshold=0.3)
    for name in ("plain", "postprocess"):
        assert results[name]["labels"] == expected[1].tolist() and len(results[name]["labels"]) > 0
        np.testing.assert_allclose(results[name]["probs"], expected[2].numpy(), atol=1e-4)


def test_metadata_inside_the_model_serves_when_the_json_is_missing(tmp_path):
    lonely = tmp_path / "model.onnx"
    shutil.copy(exported_model("sq-ssd-lite", False), lonely)
    predictor = OnnxPredictor(lonely)
    assert predictor.metadata.net_type == "sq-ssd-lite" and predictor.class_names == CLASS_NAMES
    assert predictor.size == (300, 300)


def test_missing_or_broken_file_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(OnnxModelError, match=r"nowhere\.onnx: no such ONNX file"):
        OnnxPredictor(tmp_path / "nowhere.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(OnnxModelError, match=r"broken\.onnx: ONNX Runtime cannot load it") as raised:
        OnnxPredictor(broken)
    assert "\n" not in str(raised.value)


def test_greedy_nms_drops_only_overlaps_above_the_threshold():
    boxes = np.array([[0, 0, 10, 10],      # kept (best)
                      [0, 0, 10, 12],      # IoU 100/120 = 0.83 with the first: dropped
                      [5, 0, 15, 10],      # IoU 50/150 = 0.33: kept
                      [20, 20, 30, 30],    # apart: kept
                      [0, 0, 10, 22.5]],   # IoU 100/225 = 0.444 with the first, 0.2 with the third: kept
                     dtype=np.float32)
    assert greedy_nms(boxes, 0.45).tolist() == [0, 2, 3, 4]
    assert greedy_nms(boxes, 0.3).tolist() == [0, 3]
    assert greedy_nms(boxes, 0.45, top_k=2).tolist() == [0, 2]


def test_select_detections_is_per_class_with_candidate_size_and_strict_threshold():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60], [80, 80, 90, 90]], dtype=np.float32)
    # Columns: background, class 1, class 2 (values exact in float32, so "above" is unambiguous).
    scores = np.array([[0.125, 0.5, 0.375], [0.125, 0.75, 0.125], [0.25, 0.375, 0.25], [0.5, 0.125, 0.25]],
                      dtype=np.float32)
    kept_boxes, labels, probs = select_detections(scores, boxes, prob_threshold=0.25, candidate_size=200,
                                                  iou_threshold=0.45)
    # class 1: 0.75 (box 1) suppresses box 0 (IoU 0.91), box 2 kept, box 3 below the threshold;
    # class 2: box 0 only, as 0.25 is not above 0.25.
    assert labels.tolist() == [1, 1, 2] and probs.tolist() == [0.75, 0.375, 0.375]
    np.testing.assert_array_equal(kept_boxes, boxes[[1, 2, 0]])
    _, labels, probs = select_detections(scores, boxes, prob_threshold=0.05, candidate_size=1, iou_threshold=0.45)
    assert labels.tolist() == [1, 2] and probs.tolist() == [0.75, 0.375]

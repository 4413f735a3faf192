"""The --with_postprocess graph: the PyTorch predictor's detections from ONNX Runtime alone."""
import numpy as np
import onnx
import onnxruntime
import pytest

from tests.export.nets import CLASS_NAMES, cached_net, exported_model, rgb_photo
from vision.export.checks import check_postprocess, sample_images
from vision.export.onnx_predictor import OnnxPredictor
from vision.ssd.registry import create_predictor


def _session(path):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _images():
    return [rgb_photo("000138.jpg"), rgb_photo("gun.jpg"), *sample_images(2)]


@pytest.mark.parametrize("net_type,dynamic_batch", [("mb1-ssd", False), ("mb1-ssd", True), ("mb2-ssd-lite", True),
                                                   ("vgg16-ssd", False)])
def test_postprocess_graph_gives_the_pytorch_predictors_detections(net_type, dynamic_batch):
    onnx_predictor = OnnxPredictor(exported_model(net_type, dynamic_batch, with_postprocess=True))
    assert onnx_predictor.has_postprocess
    predictor = create_predictor(net_type, cached_net(net_type))
    images = _images()
    total = 0
    for top_k, prob_threshold in [(-1, None), (10, 0.4), (3, 0.05)]:
        expected_all = predictor.predict_batch(images, top_k=top_k, prob_threshold=prob_threshold)
        actual_all = onnx_predictor.predict_batch(images, top_k=top_k, prob_threshold=prob_threshold)
        for (image, (expected_boxes, expected_labels, expected_probs),
             (boxes, labels, probs)) in zip(images, expected_all, actual_all):
            assert labels.tolist() == expected_labels.tolist()
            np.testing.assert_allclose(probs, expected_probs.numpy(), atol=1e-4)
            scale = np.array([image.shape[1], image.shape[0]] * 2, dtype=np.float32)
            np.testing.assert_allclose(boxes / scale, expected_boxes.numpy() / scale, atol=1e-3)
            total += len(labels)
    assert total > 100  # the comparison saw many detections, not a few


def test_graph_outputs_and_their_types():
    path = exported_model("mb1-ssd", True, with_postprocess=True)
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["boxes", "scores", "labels", "batch_index"]
    assert "NonMaxSuppression" in {node.op_type for node in model.graph.node}
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["input_0"]  # the thresholds are optional inputs
    predictor = OnnxPredictor(path)
    batch = predictor.preprocess(sample_images(2))
    boxes, scores, labels, batch_index = session.run(None, {"input_0": batch})
    assert boxes.dtype == np.float32 and boxes.shape == (len(scores), 4)
    assert labels.dtype == np.int64 and batch_index.dtype == np.int64
    assert set(batch_index.tolist()) == {0, 1}
    assert labels.min() >= 1 and labels.max() < len(CLASS_NAMES)
    assert (scores > 0.01).all()  # the default prob_threshold
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()  # corner form


def test_prob_threshold_and_max_per_class_inputs_work_at_run_time():
    path = exported_model("mb1-ssd", True, with_postprocess=True)
    session = _session(path)
    batch = OnnxPredictor(path).preprocess(sample_images(2))
    default = session.run(None, {"input_0": batch})
    _, scores, labels, batch_index = session.run(None, {"input_0": batch, "prob_threshold": np.array([0.6], np.float32),
                                                        "max_per_class": np.array([2], np.int64)})
    assert len(scores) < len(default[1])
    assert len(scores) > 0 and (scores > 0.6).all()
    pairs, counts = np.unique(np.stack([batch_index, labels]), axis=1, return_counts=True)
    assert counts.max() == 2
    nothing = session.run(None, {"input_0": batch, "max_per_class": np.array([0], np.int64)})
    assert len(nothing[1]) == 0


def test_candidate_size_is_applied_before_nms():
    """candidate_size 5: only each class's 5 best boxes enter NMS, as in the PyTorch predictor (ONNX's
    max_output_boxes_per_class alone would keep boxes ranked below 5 that survive NMS)."""
    from vision.datasets.synthetic import render_image

    onnx_predictor = OnnxPredictor(exported_model("mb1-ssd", False, with_postprocess=True, candidate_size=5))
    predictor = create_predictor("mb1-ssd", cached_net("mb1-ssd"), candidate_size=5)
    images = [rgb_photo()] + [render_image((76, index), num_objects=4)[0] for index in range(4)]
    nms_dropped_a_candidate = False
    for image in images:
        boxes, labels, probs = onnx_predictor.predict(image)
        expected_boxes, expected_labels, expected_probs = predictor.predict(image)
        assert labels.tolist() == expected_labels.tolist()
        np.testing.assert_allclose(probs, expected_probs.numpy(), atol=1e-4)
        per_class = np.bincount(labels, minlength=predictor.net.num_classes)[1:]
        assert per_class.max() <= 5
        # A class with detections but fewer than its 5 candidates: NMS dropped one, where the two rules differ.
        nms_dropped_a_candidate |= bool(((per_class > 0) & (per_class < 5)).any())
    assert nms_dropped_a_candidate, "no image exercised NMS below the candidate cut"
    with pytest.raises(ValueError, match="fixed at 5"):
        OnnxPredictor(exported_model("mb1-ssd", False, with_postprocess=True, candidate_size=5), candidate_size=200)


def test_check_postprocess_reports_agreement():
    result = check_postprocess(str(exported_model("mb2-ssd-lite", True, with_postprocess=True)),
                               cached_net("mb2-ssd-lite"), "mb2-ssd-lite")
    assert result.ok, str(result)
    assert "network part within 1e-04 of PyTorch" in result.message and "NonMaxSuppression rule" in result.message

"""Every format through the scripts: eval_ssd.py scores the same APs on each, training runs on all of them,
and --metric coco on a COCO set equals pycocotools on its original JSON."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch

from vision.datasets.synthetic import generate_dataset

FORMATS = ("voc", "coco", "yolo", "csv")


@pytest.fixture(scope="module")
def shapes_in_every_format(tmp_path_factory):
    """The synthetic generator's --format: the same 2 trainval + 3 test images in each layout."""
    base = tmp_path_factory.mktemp("shapes_formats")
    for dataset_format in FORMATS:
        generate_dataset(base / dataset_format, dataset_format, num_images=2, num_test=3, seed=5, width=160,
                         height=120, min_size=0.3, max_size=0.6, num_workers=1)
    return {dataset_format: base / dataset_format for dataset_format in FORMATS}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from vision.ssd.registry import create_net
    from vision.utils.reference_weights import load_deterministic_weights

    path = tmp_path_factory.mktemp("weights") / "mb1-ssd-lite-6.pth"
    torch.save(load_deterministic_weights(create_net("mb1-ssd-lite", 6)).state_dict(), path)
    return path


def _evaluate(root, weights, eval_dir, *extra):
    from vision.cli.eval_ssd import main

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--net", "mb1-ssd-lite", "--trained_model", str(weights), "--dataset", str(root),
                     "--eval_dir", str(eval_dir), "--device", "cpu", "--num_workers", "0", *extra]) == 0
    return json.loads((eval_dir / "summary.json").read_text())


def test_eval_script_gives_the_same_per_class_ap_on_every_format(shapes_in_every_format, weights, tmp_path):
    summaries = {name: _evaluate(root, weights, tmp_path / name) for name, root in shapes_in_every_format.items()}
    reference = summaries["voc"]["per_class_ap"]
    assert any(value for value in reference.values()), reference  # not trivially equal (null: no ground truth)
    for name, summary in summaries.items():
        assert summary["num_images"] == 3 and summary["num_ground_truth"] == summaries["voc"]["num_ground_truth"]
        assert set(summary["per_class_ap"]) == set(reference)
        for class_name, ap in reference.items():
            value = summary["per_class_ap"][class_name]
            assert value == ap if ap is None else value == pytest.approx(ap, abs=1e-9), (name, class_name)


def test_coco_metric_on_a_coco_set_equals_pycocotools_on_its_json(shapes_in_every_format, weights):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from vision.datasets.coco import COCODataset
    from vision.evaluation import evaluate
    from vision.ssd.predictor import Predictor
    from vision.ssd.registry import create_net, get_net_type

    dataset = COCODataset(shapes_in_every_format["coco"], is_test=True)
    net = create_net("mb1-ssd-lite", 6, is_test=True)
    net.load(str(weights))
    predictor = Predictor.from_config(net.eval(), get_net_type("mb1-ssd-lite").config, device="cpu")
    result = evaluate(predictor, dataset, list(dataset.class_names), metric="coco", num_workers=0, progress=False)
    records, truth = result.records, dataset.coco_ground_truth
    detections = [{"image_id": truth.image_ids[records.image_ids[image]], "category_id": truth.category_ids[label],
                   "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score}
                  for image, label, box, score in zip(records.det_image.tolist(), records.det_labels.tolist(),
                                                      records.det_boxes.astype(float).tolist(),
                                                      records.det_scores.astype(float).tolist())]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(truth.annotation_file))
        official = COCOeval(ground_truth, ground_truth.loadRes(detections), iouType="bbox")
        official.evaluate()
        official.accumulate()
        official.summarize()
    assert result.coco.map_50_95 == pytest.approx(official.stats[0], abs=1e-12)
    assert result.coco.map_50 == pytest.approx(official.stats[1], abs=1e-12)
    assert result.coco.map_50 > 0


def test_one_epoch_of_training_on_every_format_at_once(shapes_in_every_format, tmp_path):
    """--datasets mixes the four layouts (auto-detected root by root); --validation_dataset is YOLO."""
    from vision.cli.train_ssd import main as train_main

    roots = [str(shapes_in_every_format[name]) for name in FORMATS]
    folder = tmp_path / "models"
    assert train_main(["--datasets", *roots, "--validation_dataset", str(shapes_in_every_format["yolo"]),
                       "--net", "mb1-ssd-lite", "--batch_size", "2", "--num_workers", "0", "--num_epochs", "1",
                       "--no_progress", "--use_cuda", "false", "--seed", "0", "--resolution", "160",
                       "--checkpoint_folder", str(folder)]) == 0
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["validation_loss"])
    assert history[0]["skipped"] == 0
    assert (folder / "labels.txt").read_text().split() == ["BACKGROUND", "circle", "square", "triangle", "star",
                                                           "ring"]
    assert list(folder.glob("mb1-ssd-lite-Epoch-0-Loss-*.pth"))

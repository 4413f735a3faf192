"""A COCO JSON scored against a model with torchvision's 91-index labels: the JSON's categories are
matched to the model's labels by name (its ids need not be torchvision's), through the zoo's labels."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vision import zoo
from vision.datasets.coco import COCODataset

torch.set_num_threads(2)


@pytest.fixture
def coco_json(tmp_path) -> Path:
    """Two 320x320 images; categories "car" (id 1) and "person" (id 7), unlike torchvision's 3 and 1."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in (1, 2):
        cv2.imwrite(str(images / f"{index}.jpg"), (rng.random((320, 320, 3)) * 255).astype(np.uint8))
    document = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 320} for i in (1, 2)],
        "categories": [{"id": 1, "name": "car"}, {"id": 7, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 80], "area": 8000, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [50, 40, 60, 150], "area": 9000, "iscrowd": 0},
        ],
    }
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_model_labels_map_to_the_json_categories_by_name(coco_json, hub):
    labels = zoo.resolve_labels("-", "ssdlite320-mb3-large-coco")
    dataset = COCODataset(coco_json, is_test=True, label_file=labels)
    names = dataset.class_names
    assert names[1] == "person" and names[3] == "car" and names[12] == "N/A-12"
    assert sorted(int(label) for index in range(len(dataset)) for label in dataset[index][2]) == [1, 3]
    categories = dataset.coco_ground_truth.category_ids
    assert categories[3] == 1 and categories[1] == 7 and categories[2] is None


def test_eval_ssd_scores_a_zoo_model_on_a_coco_json(coco_json, hub, tmp_path, capsys):
    """eval_ssd.py --metric coco with a zoo name and '-' labels (the cache holds torchvision-format weights)."""
    import torchvision

    from vision.cli import eval_ssd

    hub.mkdir(parents=True)
    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    torch.save(model.state_dict(), hub / zoo.ZOO["ssdlite320-mb3-large-coco"].cache_file_name())
    code = eval_ssd.main(["--net", "ssdlite320-mb3-large", "--trained_model", "ssdlite320-mb3-large-coco",
                          "--label_file", "-", "--dataset", str(coco_json), "--metric", "coco",
                          "--eval_dir", str(tmp_path / "eval"), "--use_cuda", "false", "--max_detections", "50"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert "person" in out and "car" in out

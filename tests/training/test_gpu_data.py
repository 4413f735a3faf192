"""--gpu_data: workers give encoded files and drawn parameters; batches are decoded, augmented and matched on
the device (here the CPU device, the same code as on CUDA) and training with them runs and learns."""
import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vision.cli.train_ssd import main as train_main
from vision.datasets import BadDataWarning, build_dataset
from vision.datasets.encoded import EncodedTrainingSamples
from vision.datasets.synthetic import generate_voc_dataset
from vision.ssd.registry import net_config
from vision.training.gpu_augmentation import BatchedTrainAugmentation
from vision.training.gpu_data import DeviceAugmentedBatches, collate_encoded_batch
from vision.transforms import TrainAugmentation
from vision.transforms.one_pass import sample_parameters

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gpu_data_shapes")
    generate_voc_dataset(root, num_images=8, num_test=2, seed=5, width=160, height=120, empty_fraction=0.25)
    # One image as PNG under the .jpg name (decoded on the CPU), one truncated JPEG (skipped with a warning).
    images = sorted((root / "JPEGImages").glob("*.jpg"))
    picture = cv2.imread(str(images[1]))
    images[1].write_bytes(cv2.imencode(".png", picture)[1].tobytes())
    images[2].write_bytes(images[2].read_bytes()[:600])
    return root


def test_samples_carry_the_file_its_size_and_the_recipes_boxes(shapes):
    config = net_config("mb1-ssd-lite", None)
    dataset, _ = build_dataset("voc", [str(shapes)])
    recipe = TrainAugmentation(config.image_size, config.image_mean, config.image_std)
    samples = EncodedTrainingSamples(dataset, recipe)
    kinds = []
    for index in range(len(samples)):
        image_id = dataset.ids[index]
        path = dataset.image_path(image_id)
        if len(path.read_bytes()) == 600:
            with pytest.warns(BadDataWarning, match="truncated JPEG"):
                assert samples[index] is None
            continue
        np.random.seed(index)
        sample = samples[index]
        assert sample.size == (160, 120)
        assert sample.encoded.tobytes() == path.read_bytes()
        kinds.append(sample.device_decodable)
        _, (boxes, labels, difficult) = dataset.get_annotation(index)
        np.random.seed(index)
        expected = sample_parameters(recipe, 160, 120, boxes[difficult == 0], labels[difficult == 0])
        np.testing.assert_array_equal(sample.parameters.boxes, expected.boxes)
        np.testing.assert_array_equal(sample.parameters.window, expected.window)
    assert kinds.count(False) == 1 and kinds.count(True) == 6  # the PNG goes to the CPU decoder


def test_device_batches_have_the_training_loops_shapes_and_count_bad_samples(shapes):
    config = net_config("mb1-ssd-lite", None)
    dataset, _ = build_dataset("voc", [str(shapes)])
    samples = EncodedTrainingSamples(dataset, TrainAugmentation(config.image_size, config.image_mean, config.image_std))
    loader = torch.utils.data.DataLoader(samples, batch_size=4, collate_fn=collate_encoded_batch)
    batches = DeviceAugmentedBatches(loader, BatchedTrainAugmentation(config, "cpu"))
    assert len(batches) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadDataWarning)
        results = list(batches)
    assert sum(int(skipped) for *_, skipped in results) == 1
    assert sum(images.shape[0] for images, *_ in results) == 7
    for images, locations, labels, _ in results:
        assert images.shape[1:] == (3, 300, 300) and locations.shape[1:] == (config.num_priors, 4)
        assert labels.shape == locations.shape[:2] and labels.dtype == torch.int64
    only_bad = collate_encoded_batch([None, None])
    assert len(only_bad) == 0 and only_bad.num_skipped == 2


def test_training_with_gpu_data_on_the_cpu_device_runs_and_saves(shapes, tmp_path):
    folder = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadDataWarning)
        code = train_main(["--datasets", str(shapes), "--net", "mb1-ssd-lite", "--batch_size", "4",
                           "--num_workers", "1", "--no_progress", "--seed", "0", "--device", "cpu", "--gpu_data",
                           "--num_epochs", "2", "--resolution", "160", "--checkpoint_folder", str(folder)])
    assert code == 0
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == [0, 1]
    assert all(np.isfinite(record["train_loss"]) and record["skipped"] == 1 for record in history)


@pytest.mark.slow  # covered by: python benchmarks/bench_train.py learning --compare_gpu_data
def test_gpu_data_learns_like_the_cpu_workers(tmp_path):
    from vision.evaluation.runner import evaluate
    from vision.ssd.registry import create_net, create_predictor

    data = tmp_path / "data"
    generate_voc_dataset(data, num_images=400, num_test=60, seed=11, width=200, height=150, min_objects=1,
                         max_objects=2, classes=("circle", "square"))
    maps = {}
    for name, extra in (("cpu", []), ("gpu_data", ["--gpu_data"])):
        folder = tmp_path / name
        code = train_main(["--datasets", str(data), "--net", "mb1-ssd-lite", "--batch_size", "16", "--num_workers", "2",
                           "--no_progress", "--seed", "0", "--device", "cpu", "--num_epochs", "12", "--lr", "0.01",
                           "--scheduler", "cosine", "--t_max", "12", "--resolution", "160",
                           "--checkpoint_folder", str(folder)] + extra)
        assert code == 0
        test_set, class_names = build_dataset("voc", [str(data)], is_test=True)
        net = create_net("mb1-ssd-lite", len(class_names), is_test=True, image_size=160)
        net.load(str(folder / "last.pth"))
        maps[name] = evaluate(create_predictor("mb1-ssd-lite", net), test_set, class_names, progress=False).mean_ap
        shutil.rmtree(folder)
    # Both must have learnt something for the comparison to mean anything (an untrained net scores about 0).
    # Measured on a 2-core AMD EPYC: worker path 0.174, --gpu_data 0.209.
    assert maps["cpu"] > 0.1, maps
    assert abs(maps["cpu"] - maps["gpu_data"]) < 0.05, maps

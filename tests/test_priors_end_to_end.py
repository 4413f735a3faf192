"""--priors auto end to end: one epoch at 160 fits and writes a table, and everything after uses it without
being told: the checkpoints and their sidecars, evaluation, the example, ONNX export (plain, with the NMS
graph, INT8, and the JSON beside each), OnnxPredictor and resume. A checkpoint without a table keeps the
net type's priors."""
import json

import numpy as np
import pytest
import torch

from vision.cli.convert_to_caffe2_models import main as convert_main
from vision.cli.eval_ssd import main as eval_main
from vision.cli.run_ssd_example import main as example_main
from vision.cli.train_ssd import main as train_main
from vision.datasets.synthetic import MIXED_SIZES, generate_voc_dataset
from vision.export.onnx_predictor import OnnxPredictor
from vision.ssd.priors import TablePriors
from vision.ssd.registry import create_net, net_config
from vision.ssd.sidecar import read_sidecar
from vision.ssd.weights import load_net

NET = "mb1-ssd-lite"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors_e2e")
    data = root / "data"
    generate_voc_dataset(data, num_images=24, num_test=4, seed=11, **MIXED_SIZES)
    folder = root / "run"
    code = train_main(["--datasets", str(data), "--validation_dataset", str(data), "--net", NET, "--resolution", "160",
                       "--priors", "auto", "--num_epochs", "1", "--batch_size", "8", "--num_workers", "0",
                       "--checkpoint_folder", str(folder), "--use_cuda", "false", "--no_progress", "--seed", "0"])
    assert code == 0
    return data, folder


def _table(folder):
    return TablePriors.from_document(json.loads((folder / "priors.json").read_text()))


def test_the_fitted_table_is_written_and_recorded_beside_every_checkpoint(trained):
    data, folder = trained
    table = _table(folder)
    assert table.priors_per_location() == net_config(NET).prior_rule.priors_per_location()
    for checkpoint in folder.glob("*.pth"):
        info = read_sidecar(checkpoint)
        assert info.image_size == (160, 160) and TablePriors.from_document(info.priors) == table
    last = torch.load(folder / "last.pth", weights_only=True)
    assert TablePriors.from_document(last["priors"]) == table
    net = load_net(NET, str(folder / "last.pth"), 4)
    assert net.config.prior_rule == table
    assert not torch.equal(net.priors, net_config(NET, (160, 160)).priors)
    torch.testing.assert_close(net.priors, table.priors((160, 160), net.config.feature_map_shapes))


def test_eval_and_the_example_use_the_table(trained, tmp_path, capsys):
    data, folder = trained
    model = str(next(folder.glob(f"{NET}-Epoch-0-*.pth")))
    labels = str(folder / "labels.txt")
    assert eval_main(["--net", NET, "--trained_model", model, "--dataset", str(data), "--label_file", labels,
                      "--eval_dir", str(tmp_path / "eval"), "--use_cuda", "false"]) == 0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["image_size"] == [160, 160]
    image = str(data / "JPEGImages" / "000024.jpg")
    assert example_main([NET, model, labels, image, "--output", str(tmp_path / "out.jpg"), "--device", "cpu",
                         "--prob_threshold", "0.01", "--json", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["images"][0]["width"] == 640


def test_every_export_carries_the_table_and_its_graph_decodes_with_it(trained, tmp_path):
    data, folder = trained
    model = str(folder / "last.pth")
    labels = str(folder / "labels.txt")
    table = _table(folder)
    plain, nms = tmp_path / "plain.onnx", tmp_path / "nms.onnx"
    assert convert_main([NET, model, labels, "--output", str(plain), "--int8", "--calibration_data", str(data),
                         "--calibration_images", "8"]) == 0
    assert convert_main([NET, model, labels, "--output", str(nms), "--with_postprocess"]) == 0
    for path in (plain, tmp_path / "plain.int8.onnx", nms):
        metadata = json.loads(path.with_suffix(".json").read_text())
        assert TablePriors.from_document(metadata["priors"]) == table, path
    # The graph's boxes equal PyTorch's with the table (and not with the net type's own priors).
    net = load_net(NET, model, 4).eval()
    image = np.zeros((160, 160, 3), np.uint8)
    image[40:60, 40:60] = 255
    predictor = OnnxPredictor(str(plain))
    batch = predictor.preprocess([image])
    boxes = predictor.forward(batch)["boxes"]
    with torch.no_grad():
        np.testing.assert_allclose(boxes, net(torch.from_numpy(batch))[1].numpy(), atol=1e-4)
        default = create_net(NET, 4, is_test=True, image_size=160)
        default.load_state_dict(net.state_dict())
        assert not np.allclose(boxes, default.eval()(torch.from_numpy(batch))[1].numpy(), atol=1e-3)


def test_resume_keeps_the_table_and_refuses_another(trained, tmp_path):
    data, folder = trained
    flags = ["--datasets", str(data), "--net", NET, "--num_epochs", "2", "--batch_size", "8", "--num_workers", "0",
             "--checkpoint_folder", str(folder), "--use_cuda", "false", "--no_progress", "--resume",
             str(folder / "last.pth")]
    assert train_main(flags + ["--priors", "default"]) == 2
    assert train_main(flags) == 0
    table = _table(folder)
    assert TablePriors.from_document(torch.load(folder / "last.pth", weights_only=True)["priors"]) == table
    assert torch.load(folder / "last.pth", weights_only=True)["epoch"] == 1


def test_a_checkpoint_without_a_table_keeps_the_net_types_priors(tmp_path):
    net = create_net(NET, 3)
    path = tmp_path / "released.pth"
    torch.save(net.state_dict(), path)  # the original's format: no sidecar, no table
    loaded = load_net(NET, str(path), 3)
    assert torch.equal(loaded.priors, net_config(NET).priors)

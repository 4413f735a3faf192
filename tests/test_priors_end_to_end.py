"""--priors auto end to end: one epoch at 160 fits and writes a table, and everything after uses it without
being told: the checkpoints and their sidecars, evaluation, the example, ONNX export (plain, with the NMS
graph, INT8, and the JSON beside each), OnnxPredictor and resume. A checkpoint without a table keeps the
net type's priors. At start train_ssd.py logs the coverage and names a poorly covered class with its fix."""
import json
import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tests.datasets.conftest import VOCRootBuilder, voc_object, voc_xml
from vision.cli.convert_to_caffe2_models import main as convert_main
from vision.cli.eval_ssd import main as eval_main
from vision.cli.run_ssd_example import main as example_main
from vision.cli.train_ssd import main as train_main
from vision.datasets.synthetic import MIXED_SIZES, generate_voc_dataset
from vision.export.onnx_predictor import OnnxPredictor
from vision.ssd import weights
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


@pytest.fixture
def loaded_nets(monkeypatch):
    """Every net ``vision.ssd.weights.load_net`` builds (eval_ssd.py and the example's detector import it
    when they load a ``.pth``)."""
    nets = []

    def recording(*args, **kwargs):
        nets.append(load_net(*args, **kwargs))
        return nets[-1]

    monkeypatch.setattr(weights, "load_net", recording)
    return nets


def _assert_uses_the_table(net, table):
    """``net`` decodes against ``table``'s priors at 160, not the net type's own."""
    assert net.config.prior_rule == table and net.config.image_size == (160, 160)
    torch.testing.assert_close(net.priors, table.priors((160, 160), net.config.feature_map_shapes))
    assert not torch.equal(net.priors, net_config(NET, (160, 160)).priors)


def test_eval_and_the_example_use_the_table(trained, tmp_path, capsys, loaded_nets):
    data, folder = trained
    table = _table(folder)
    model = str(next(folder.glob(f"{NET}-Epoch-0-*.pth")))
    labels = str(folder / "labels.txt")
    assert eval_main(["--net", NET, "--trained_model", model, "--dataset", str(data), "--label_file", labels,
                      "--eval_dir", str(tmp_path / "eval"), "--use_cuda", "false"]) == 0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["image_size"] == [160, 160]
    assert len(loaded_nets) == 1
    _assert_uses_the_table(loaded_nets[0], table)
    image = str(data / "JPEGImages" / "000024.jpg")
    assert example_main([NET, model, labels, image, "--output", str(tmp_path / "out.jpg"), "--device", "cpu",
                         "--prob_threshold", "0.01", "--json", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["images"][0]["width"] == 640
    assert len(loaded_nets) == 2
    _assert_uses_the_table(loaded_nets[1], table)


def _graph_tensors(path):
    """Every constant of an ONNX graph: its initializers and its Constant nodes' values."""
    model = onnx.load(str(path))
    tensors = [numpy_helper.to_array(initializer) for initializer in model.graph.initializer]
    tensors += [numpy_helper.to_array(attribute.t) for node in model.graph.node if node.op_type == "Constant"
                for attribute in node.attribute if attribute.type == onnx.AttributeProto.TENSOR]
    return tensors


def _holds_prior_sizes(path, priors):
    """Whether the graph at ``path`` decodes against these priors' widths and heights (a ``(1, P, 2)``
    constant; the centres are the same grid for every table)."""
    sizes = priors[:, 2:].numpy()
    return any(tensor.shape == (1, *sizes.shape) and np.allclose(tensor[0], sizes, atol=1e-6)
               for tensor in _graph_tensors(path))


def test_every_export_carries_the_table_and_its_graph_decodes_with_it(trained, tmp_path):
    data, folder = trained
    model = str(folder / "last.pth")
    labels = str(folder / "labels.txt")
    table = _table(folder)
    plain, nms = tmp_path / "plain.onnx", tmp_path / "nms.onnx"
    assert convert_main([NET, model, labels, "--output", str(plain), "--int8", "--calibration_data", str(data),
                         "--calibration_images", "8"]) == 0
    assert convert_main([NET, model, labels, "--output", str(nms), "--with_postprocess"]) == 0
    fitted = table.priors((160, 160), net_config(NET, (160, 160)).feature_map_shapes)
    own = net_config(NET, (160, 160)).priors
    for path in (plain, tmp_path / "plain.int8.onnx", nms):
        metadata = json.loads(path.with_suffix(".json").read_text())
        assert TablePriors.from_document(metadata["priors"]) == table, path
        # The graph itself (the INT8 and the postprocess one too) decodes against the fitted priors.
        assert _holds_prior_sizes(path, fitted) and not _holds_prior_sizes(path, own), path
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


def test_train_ssd_prints_the_coverage_and_names_the_poorly_covered_class_and_its_fix(tmp_path, caplog):
    """At start, train_ssd.py logs the coverage table and, for a class below 0.95, a warning naming the
    class and the flag that fixes it (measured: here a fit at this size covers it)."""
    builder = VOCRootBuilder(tmp_path / "data").labels("dog\ndot\n")
    ids = [f"i{index}" for index in range(4)]
    for index, image_id in enumerate(ids):
        # 15 dots of 7x7 pixels (VOC's 1-based 5..12 is 4..11) near centres of the first map's 10x10 cells, about
        # 0.044 of the side where the smallest own prior is 0.2; and one large dog, which the own priors cover.
        dots = [voc_object("dot", (16 * col + 5, 16 * row + 5, 16 * col + 12, 16 * row + 12))
                for row, col in [((index + cell) % 10, (3 * cell) % 10) for cell in range(15)]]
        builder.add(image_id, voc_xml([voc_object("dog", (21, 21, 140, 140))] + dots, 160, 160), width=160,
                    height=160)
    builder.split("trainval", ids)
    caplog.set_level(logging.INFO, logger="train_ssd")
    assert train_main(["--datasets", str(builder.root), "--net", NET, "--resolution", "160", "--num_epochs", "1",
                       "--batch_size", "4", "--num_workers", "0", "--checkpoint_folder", str(tmp_path / "run"),
                       "--use_cuda", "false", "--no_progress", "--seed", "0"]) == 0
    messages = [record.getMessage() for record in caplog.records if record.name == "train_ssd"]
    start = messages.index(next(line for line in messages if line.startswith("prior coverage (")))
    assert messages[start].startswith(f"prior coverage ({NET} at 160x160, {NET}'s own priors")
    table = {line.split()[0]: line.split() for line in messages[start + 2:start + 4]}
    assert table["dog"][1:3] == ["4", "100.0%"]
    assert table["dot"][1:3] == ["60", "0.0%"] and "below 0.95" in messages[start + 3]
    assert start < messages.index(next(line for line in messages if line.startswith("Epoch: 0")))
    warnings = [record.getMessage() for record in caplog.records
                if record.name == "train_ssd" and record.levelno == logging.WARNING]
    assert any(line.startswith("class 'dot': only 0.0% of its 60 boxes") for line in warnings), warnings
    assert not any("'dog'" in line for line in warnings)
    assert any(line.startswith("fix: --priors auto") for line in warnings), warnings

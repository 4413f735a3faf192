"""Saving, loading, initialising from a base net or a pretrained SSD, and the error cases."""
import pytest
import torch

from vision.ssd import weights
from vision.ssd.registry import create_net
from vision.utils.checkpoint import CheckpointError
from vision.utils.reference_weights import load_deterministic_weights


def _outputs(net, seed=5):
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net.eval()(x)


def test_saved_state_dict_loads_into_a_fresh_net_with_identical_outputs(tmp_path):
    net = load_deterministic_weights(create_net("mb1-ssd-lite", 21))
    path = tmp_path / "mb1-ssd-lite-Epoch-0-Loss-1.0.pth"
    net.save(str(path))
    assert isinstance(torch.load(path, weights_only=True), dict)
    fresh = create_net("mb1-ssd-lite", 21)
    fresh.load(str(path))
    for a, b in zip(_outputs(net), _outputs(fresh)):
        assert torch.equal(a, b)


def test_training_checkpoint_and_ddp_prefix_load_too(tmp_path):
    net = load_deterministic_weights(create_net("sq-ssd-lite", 6))
    path = tmp_path / "last.pth"
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"model": state, "epoch": torch.tensor(3)}, path)
    fresh = create_net("sq-ssd-lite", 6)
    fresh.load(str(path))
    assert torch.equal(_outputs(net)[0], _outputs(fresh)[0])


def test_wrong_class_count_names_the_layer_and_both_counts(tmp_path):
    path = tmp_path / "five.pth"
    torch.save(create_net("mb1-ssd", 5).state_dict(), path)
    with pytest.raises(ValueError) as error:
        create_net("mb1-ssd", 21).load(str(path))
    message = str(error.value)
    assert "classification_headers.0" in message and "5 classes" in message and "expects 21" in message
    assert str(path) in message


def test_missing_truncated_and_foreign_files_get_one_line_errors(tmp_path):
    net = create_net("mb1-ssd", 21)
    with pytest.raises(CheckpointError, match="no such checkpoint file") as error:
        net.load(str(tmp_path / "absent.pth"))
    assert "\n" not in str(error.value)
    good = tmp_path / "good.pth"
    net.save(str(good))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth: not a readable PyTorch checkpoint") as error:
        net.load(str(truncated))
    assert "\n" not in str(error.value)
    text = tmp_path / "labels.txt"
    text.write_text("BACKGROUND\ncat\n")
    with pytest.raises(CheckpointError, match="labels.txt"):
        net.load(str(text))
    not_weights = tmp_path / "numbers.pth"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(CheckpointError, match="holds no model weights"):
        net.load(str(not_weights))


def test_checkpoint_of_another_net_type_is_rejected(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(create_net("mb1-ssd-lite", 21).state_dict(), path)
    with pytest.raises(ValueError, match="vgg.pth: 28 missing keys .*: not a checkpoint of this net"):
        create_net("mb1-ssd", 21).load(str(path))  # the net loads local files strictly; it does not recognise
    with pytest.raises(ValueError, match="this checkpoint is a mb1-ssd-lite \\(21 classes\\), not a mb1-ssd; "
                                         "run with --net mb1-ssd-lite"):
        weights.load_weights(create_net("mb1-ssd", 21), str(path), "mb1-ssd")


def test_init_from_base_net_loads_only_the_base(tmp_path):
    donor = load_deterministic_weights(create_net("mb1-ssd", 21))
    path = tmp_path / "mobilenet_v1_base.pth"
    torch.save(donor.base_net.state_dict(), path)
    net = create_net("mb1-ssd", 3)
    net.init_from_base_net(str(path))
    for name, tensor in donor.base_net.state_dict().items():
        assert torch.equal(net.base_net.state_dict()[name], tensor)
    with pytest.raises(ValueError, match="not a state_dict of this base net"):
        create_net("mb2-ssd-lite", 3).init_from_base_net(str(path))


def test_init_from_pretrained_ssd_keeps_all_but_the_heads(tmp_path):
    donor = load_deterministic_weights(create_net("mb2-ssd-lite", 21))
    path = tmp_path / "mb2-ssd-lite-mp-0_686.pth"
    torch.save(donor.state_dict(), path)
    net = create_net("mb2-ssd-lite", 4)
    net.init_from_pretrained_ssd(str(path))
    own = net.state_dict()
    for name, tensor in donor.state_dict().items():
        if name.startswith(("classification_headers", "regression_headers")):
            continue
        assert torch.equal(own[name], tensor), name
    assert own["classification_headers.5.weight"].shape[0] == 6 * 4

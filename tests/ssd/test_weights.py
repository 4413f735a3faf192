"""vision.ssd.weights, the layer above the net that loads weights: the one class-count rule, what a wrong
file is said to be, the zoo's original-file check passed in, and nets built as their checkpoint says."""
import json

import numpy as np
import pytest
import torch

from tests.conftest import reference_forward
from vision import zoo
from vision.ssd import weights
from vision.ssd.heads import class_count
from vision.ssd.registry import NET_TYPES, create_net, net_config
from vision.ssd.sidecar import write_sidecar
from vision.utils.reference_weights import deterministic_state_dict


@pytest.mark.parametrize("net_type", sorted(NET_TYPES))
def test_the_class_count_comes_from_the_heads_of_every_net_type(net_type):
    per_location = NET_TYPES[net_type].config.prior_rule.priors_per_location()
    for count in (2, 7, 91):
        with torch.device("meta"):
            state_dict = create_net(net_type, count).state_dict()
        assert class_count(state_dict, per_location) == count
        assert weights.checkpoint_class_count(state_dict, net_type) == count


def test_no_class_count_when_the_heads_disagree_or_are_missing():
    state_dict = create_net("mb1-ssd", 3).state_dict()
    assert class_count(state_dict, (4,) * 6) is None  # 18 outputs per head are not 4 per location
    broken = dict(state_dict)
    broken["classification_headers.5.bias"] = torch.zeros(30)
    broken["classification_headers.5.weight"] = torch.zeros(30, 256, 3, 3)
    assert class_count(broken, (6,) * 6) is None
    assert class_count({}, (6,)) is None


def test_a_base_net_given_as_a_whole_net_says_which_flag_takes_it(tmp_path):
    path = tmp_path / "base.pth"
    torch.save(create_net("mb1-ssd", 21).base_net.state_dict(), path)
    with pytest.raises(ValueError, match="base net of mb1-ssd.*pass it as --base_net"):
        weights.load_weights(create_net("mb1-ssd", 21), str(path), "mb1-ssd")
    with pytest.raises(ValueError, match="pass it as --base_net instead of --pretrained_ssd"):
        weights.init_from_pretrained_ssd(create_net("mb1-ssd", 4), str(path), "mb1-ssd")
    whole = tmp_path / "whole.pth"
    torch.save(create_net("mb1-ssd", 21).state_dict(), whole)
    with pytest.raises(ValueError, match="a whole SSD, not a base net; pass it as --pretrained_ssd"):
        weights.init_from_base_net(create_net("mb1-ssd", 4), str(whole))


def test_the_zoo_check_of_an_original_file_is_passed_in(tmp_path, monkeypatch):
    entry = zoo.ZOO["mb1-ssd-voc"]
    good = tmp_path / "good.pth"
    torch.save(create_net("mb1-ssd", 21).state_dict(), good)
    weights.check_original_file(entry, str(good))  # loads strictly: no error
    bad = tmp_path / "bad.pth"
    torch.save(create_net("mb1-ssd-lite", 21).state_dict(), bad)
    with pytest.raises(zoo.ZooError, match="not a mb1-ssd ssd"):
        weights.check_original_file(entry, str(bad))
    seen = []
    monkeypatch.setattr(zoo, "download_url", lambda *args, **kwargs: kwargs["verify"]("file") or "cached")
    assert zoo.download(entry, check_original=lambda e, path: seen.append((e.name, path))) == "cached"
    assert seen == [("mb1-ssd-voc", "file")]


def test_load_net_builds_the_net_at_the_size_of_its_sidecar(tmp_path):
    trained = create_net("mb1-ssd-lite", 3, image_size=(320, 192))
    path = tmp_path / "model.pth"
    trained.save(str(path))
    write_sidecar(path, "mb1-ssd-lite", (320, 192), ["BACKGROUND", "a", "b"])
    net = weights.load_net("mb1-ssd-lite", str(path), 3)
    assert net.config.image_size == (320, 192) and net.is_test
    assert torch.equal(net.priors, trained.priors)
    assert weights.load_net("mb1-ssd-lite", str(path), 3, image_size=300).config.image_size == (300, 300)
    document = json.loads((tmp_path / "model.pth.json").read_text())
    document["net_type"] = "mb2-ssd-lite"
    (tmp_path / "model.pth.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="the checkpoint is a mb2-ssd-lite, not a mb1-ssd-lite"):
        weights.load_net("mb1-ssd-lite", str(path), 3)


def test_a_released_checkpoint_without_a_table_loads_and_gives_the_originals_outputs(tmp_path):
    """The original's format (a bare state_dict, no sidecar, no table), loaded as every command loads a
    ``.pth``: the net type's own priors, and the original's recorded forward pass (``tests/data/forward``,
    the tolerance of ``test_mb1_ssd_reproduces_the_original_forward_pass``)."""
    path = tmp_path / "mb1-ssd-released.pth"
    torch.save(deterministic_state_dict(create_net("mb1-ssd", 21).state_dict()), path)
    assert sorted(item.name for item in tmp_path.iterdir()) == [path.name]  # no sidecar beside it
    reference = reference_forward("mb1-ssd")
    x = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(7))
    for is_test, names in ((False, ("confidences", "locations")), (True, ("scores", "boxes"))):
        net = weights.load_net("mb1-ssd", str(path), 21, is_test=is_test).eval()
        assert net.config.prior_rule == net_config("mb1-ssd").prior_rule
        assert torch.equal(net.priors, net_config("mb1-ssd").priors)
        with torch.no_grad():
            outputs = net(x)
        for output, name in zip(outputs, names):
            np.testing.assert_allclose(output.numpy(), reference[name], atol=1e-4, rtol=1e-4, err_msg=name)

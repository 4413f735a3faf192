"""The recipe beyond the original's: a linear warmup of the learning rate, an average (EMA) of the weights
that is validated and saved, and best.pth kept by validation mAP; a resumed run with them equals an
uninterrupted one."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from vision.cli.train_ssd import main as train_main
from vision.datasets.synthetic import generate_voc_dataset
from vision.training.loops import train_one_epoch
from vision.training.recipe import WeightAverage, warmup_factor

FAST = ["--net", "mb1-ssd-lite", "--batch_size", "4", "--num_workers", "0", "--no_progress", "--lr", "0.01",
        "--seed", "0", "--resolution", "160", "--use_cuda", "false"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipe_shapes")
    generate_voc_dataset(root, num_images=8, num_test=4, seed=3, width=160, height=120)
    return root


def _history(folder: Path) -> list:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def test_the_warmup_rises_linearly_then_holds():
    assert [warmup_factor(step, 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_the_warmup_scales_each_step_and_gives_the_scheduler_its_rates_back():
    net = nn.Linear(2, 1)
    optimizer = torch.optim.SGD([{"params": net.parameters(), "lr": 0.1}], lr=0.1)
    seen = []

    class Criterion(nn.Module):
        def forward(self, confidence, locations, labels, gt_locations):
            seen.append(optimizer.param_groups[0]["lr"])
            return confidence.sum() * 0, locations.sum() * 0 + confidence.mean()

    batches = [(torch.ones(1, 2), torch.zeros(1), torch.zeros(1), 0)] * 3

    class Twice(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return out, out

    train_one_epoch(Twice(net), batches, Criterion(), optimizer, torch.device("cpu"), 0, show_progress=False,
                    debug_steps=0, global_step=1, lr_factor=lambda step: warmup_factor(step, 4))
    assert seen == pytest.approx([0.05, 0.075, 0.1])  # steps 1, 2, 3 of 4
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_the_average_follows_the_weights_with_a_decay_that_grows():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    average = WeightAverage(net, decay=0.9)
    expected = None
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            net[0].weight.fill_(value)
        net[1].num_batches_tracked.fill_(step + 5)
        average.update(net)
        if expected is None:
            expected = value  # the first update copies
        else:
            decay = min(0.9, (1 + step) / (10 + step))
            expected = decay * expected + (1 - decay) * value
    assert float(average.net[0].weight.detach()) == pytest.approx(expected)
    assert int(average.net[1].num_batches_tracked) == 8
    state = average.state_dict()
    other = WeightAverage(net, decay=0.9)
    other.load_state_dict(state)
    assert float(other.net[0].weight.detach()) == pytest.approx(expected) and int(other.average.n_averaged) == 4


def test_the_saved_weights_are_the_average_and_best_pth_follows_the_validation_map(shapes, tmp_path):
    folder = tmp_path / "run"
    assert train_main(FAST + ["--datasets", str(shapes), "--validation_dataset", str(shapes), "--num_epochs", "2",
                              "--validation_epochs", "1", "--ema_decay", "0.9", "--warmup_epochs", "1",
                              "--checkpoint_folder", str(folder)]) == 0
    last = torch.load(folder / "last.pth", weights_only=True)
    history = _history(folder)
    epoch_file = sorted(folder.glob("mb1-ssd-lite-Epoch-1-*.pth"))[0]
    saved = torch.load(epoch_file, weights_only=True)
    # The epoch's .pth is the average, last.pth keeps the raw weights (to resume) and the average beside them.
    key = "classification_headers.0.0.weight"
    assert torch.equal(saved[key], last["ema"]["model"][key]) and not torch.equal(saved[key], last["model"][key])
    best = max(history, key=lambda record: record["validation_map"])
    assert last["best_map"] == best["validation_map"] and best.get("best") is True
    assert (folder / "best.pth").is_file() and (folder / "best.pth.json").is_file()
    assert history[0].get("best") is True  # the first validation is the best so far


def test_a_resumed_run_with_warmup_and_average_equals_an_uninterrupted_one(shapes, tmp_path):
    flags = FAST + ["--datasets", str(shapes), "--warmup_epochs", "1.5", "--ema_decay", "0.9",
                    "--scheduler", "cosine", "--t_max", "3"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert train_main(flags + ["--num_epochs", "3", "--checkpoint_folder", str(straight)]) == 0
    assert train_main(flags + ["--num_epochs", "1", "--checkpoint_folder", str(interrupted)]) == 0
    assert train_main(flags + ["--num_epochs", "3", "--checkpoint_folder", str(interrupted),
                               "--resume", str(interrupted / "last.pth")]) == 0
    a = torch.load(straight / "last.pth", weights_only=True)
    b = torch.load(interrupted / "last.pth", weights_only=True)
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], atol=1e-4, rtol=1e-4, msg=name)
        torch.testing.assert_close(a["ema"]["model"][name], b["ema"]["model"][name], atol=1e-4, rtol=1e-4,
                                   msg=name)
    assert a["ema"]["updates"] == b["ema"]["updates"] == a["step"]

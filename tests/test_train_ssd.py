"""train_ssd.py: the original's command forms, resuming, failure handling and DDP on two CPU processes."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT
from vision.cli.train_ssd import main as train_main
from vision.datasets.synthetic import generate_voc_dataset
from vision.ssd.registry import create_net
from vision.utils.reference_weights import load_deterministic_weights

FAST = ["--net", "mb1-ssd-lite", "--batch_size", "4", "--num_workers", "0", "--no_progress", "--lr", "0.01",
        "--seed", "0"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_voc_dataset(root, num_images=8, num_test=4, seed=3, width=160, height=120, empty_fraction=0.25)
    return root


@pytest.fixture(scope="module")
def more_shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("more_shapes")
    generate_voc_dataset(root, num_images=4, num_test=2, seed=4, width=160, height=120)
    return root


def _history(folder: Path) -> list:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def _models(folder: Path) -> list:
    return sorted(p.name for p in folder.glob("mb1-ssd-lite-Epoch-*.pth"))


def test_several_datasets_validation_and_checkpoint_names(shapes, more_shapes, tmp_path):
    folder = tmp_path / "new" / "folder"
    code = train_main(FAST + ["--datasets", str(shapes), str(more_shapes), "--validation_dataset", str(shapes),
                              "--num_epochs", "1", "--checkpoint_folder", str(folder)])
    assert code == 0
    (model,) = _models(folder)
    record = _history(folder)[0]
    assert model == f"mb1-ssd-lite-Epoch-0-Loss-{record['validation_loss']}.pth"
    assert (folder / "labels.txt").read_text().split() == ["BACKGROUND", "circle", "square", "triangle", "star", "ring"]
    state_dict = torch.load(folder / model, weights_only=True)
    assert set(state_dict) == set(create_net("mb1-ssd-lite", 6).state_dict())
    last = torch.load(folder / "last.pth", weights_only=True)
    assert (last["epoch"] == 0 and last["args"]["net"] == "mb1-ssd-lite"
            and isinstance(last["rng"]["torch"], torch.Tensor))


def test_without_validation_set_the_name_carries_the_training_loss(shapes, tmp_path):
    assert train_main(FAST + ["--datasets", str(shapes), "--num_epochs", "1",
                              "--checkpoint_folder", str(tmp_path)]) == 0
    assert _models(tmp_path) == [f"mb1-ssd-lite-Epoch-0-Loss-{_history(tmp_path)[0]['train_loss']}.pth"]


@pytest.mark.parametrize("scheduler_flags,expected_lrs", [
    (["--scheduler", "cosine", "--t_max", "4"], [0.01, 0.01 * (1 + 0.7071067811865476) / 2]),
    (["--scheduler", "multi-step", "--milestones", "1", "--gamma", "0.5"], [0.01, 0.005]),
])
def test_schedulers_step_once_per_epoch(shapes, tmp_path, scheduler_flags, expected_lrs):
    assert train_main(FAST + ["--datasets", str(shapes), "--num_epochs", "2", "--checkpoint_folder", str(tmp_path)]
                      + scheduler_flags) == 0
    assert [r["lr"] for r in _history(tmp_path)] == pytest.approx(expected_lrs)


def test_base_net_and_freeze_base_net(shapes, tmp_path):
    donor = load_deterministic_weights(create_net("mb1-ssd-lite", 21))
    base = tmp_path / "mb1-base.pth"
    torch.save(donor.base_net.state_dict(), base)
    folder = tmp_path / "run"
    assert train_main(FAST + ["--datasets", str(shapes), "--num_epochs", "1", "--checkpoint_folder", str(folder),
                              "--base_net", str(base), "--freeze_base_net"]) == 0
    trained = torch.load(folder / _models(folder)[0], weights_only=True)
    for name, tensor in donor.base_net.state_dict().items():
        if "num_batches_tracked" in name or "running" in name:
            continue  # BatchNorm statistics still update in train mode, as in the original
        assert torch.equal(trained[f"base_net.{name}"], tensor), name


def test_pretrained_ssd_with_another_class_count(shapes, tmp_path):
    donor = load_deterministic_weights(create_net("mb1-ssd-lite", 21))
    pretrained = tmp_path / "mb1-ssd-lite-voc.pth"
    torch.save(donor.state_dict(), pretrained)
    folder = tmp_path / "run"
    assert train_main(FAST + ["--datasets", str(shapes), "--num_epochs", "1", "--checkpoint_folder", str(folder),
                              "--pretrained_ssd", str(pretrained), "--freeze_net"]) == 0
    trained = torch.load(folder / _models(folder)[0], weights_only=True)
    assert torch.equal(trained["extras.0.0.weight"], donor.state_dict()["extras.0.0.weight"])
    assert trained["classification_headers.5.weight"].shape[0] == 6 * 6


def test_resume_continues_at_the_next_epoch_with_the_uninterrupted_learning_rate(shapes, tmp_path):
    flags = FAST + ["--datasets", str(shapes), "--scheduler", "multi-step", "--milestones", "1,2", "--gamma", "0.5"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert train_main(flags + ["--num_epochs", "3", "--checkpoint_folder", str(straight)]) == 0
    assert train_main(flags + ["--num_epochs", "1", "--checkpoint_folder", str(interrupted)]) == 0
    assert train_main(flags + ["--num_epochs", "3", "--checkpoint_folder", str(interrupted),
                               "--resume", str(interrupted / "last.pth")]) == 0
    assert [r["epoch"] for r in _history(interrupted)] == [0, 1, 2]
    assert [r["lr"] for r in _history(interrupted)] == pytest.approx([r["lr"] for r in _history(straight)])
    assert [r["lr"] for r in _history(straight)] == pytest.approx([0.01, 0.005, 0.0025])
    # same seed, same data order, same RNG state restored: the resumed run equals the straight one
    a = torch.load(straight / "last.pth", weights_only=True)["model"]
    b = torch.load(interrupted / "last.pth", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-4, msg=name)


def test_resume_from_a_bare_state_dict_starts_at_epoch_zero(shapes, tmp_path):
    weights = tmp_path / "weights.pth"
    torch.save(create_net("mb1-ssd-lite", 6).state_dict(), weights)
    assert train_main(FAST + ["--datasets", str(shapes), "--num_epochs", "1", "--checkpoint_folder", str(tmp_path),
                              "--resume", str(weights)]) == 0
    assert _history(tmp_path)[0]["epoch"] == 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(shapes, tmp_path, monkeypatch, capsys):
    assert train_main(FAST + ["--datasets", str(shapes), "--num_epochs", "1",
                              "--checkpoint_folder", str(tmp_path)]) == 0
    good = (tmp_path / "last.pth").read_bytes()
    from vision.nn import multibox_loss

    original_forward = multibox_loss.MultiboxLoss.forward
    monkeypatch.setattr(multibox_loss.MultiboxLoss, "forward",
                        lambda self, *a: tuple(v * float("nan") for v in original_forward(self, *a)))
    code = train_main(FAST + ["--datasets", str(shapes), "--num_epochs", "3", "--checkpoint_folder", str(tmp_path),
                              "--resume", str(tmp_path / "last.pth")])
    assert code == 3
    error = capsys.readouterr().err
    assert "loss became nan at epoch 1" in error and "last.pth" in error
    assert (tmp_path / "last.pth").read_bytes() == good


def test_clear_errors_for_bad_flags(shapes, tmp_path, capsys):
    assert train_main(FAST + ["--datasets", str(shapes), "--base_net", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth: no such checkpoint file" in capsys.readouterr().err
    assert train_main(FAST + ["--datasets", str(tmp_path / "nowhere"), "--checkpoint_folder", str(tmp_path)]) == 2
    assert "nowhere" in capsys.readouterr().err


def _run_training(args, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "train_ssd.py")] + args, cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)


def test_killed_run_leaves_a_loadable_checkpoint_and_resumes(shapes, tmp_path):
    folder = tmp_path / "run"
    process = _run_training(FAST + ["--datasets", str(shapes), "--num_epochs", "50",
                                    "--checkpoint_folder", str(folder)])
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "last.pth").exists():
        time.sleep(0.2)
    time.sleep(1.0)  # let it get into the next epoch (or the middle of a save)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = torch.load(folder / "last.pth", weights_only=True)  # never truncated, whenever the kill came
    epoch = int(checkpoint["epoch"])
    assert train_main(FAST + ["--datasets", str(shapes), "--num_epochs", str(epoch + 2),
                              "--checkpoint_folder", str(folder), "--resume", str(folder / "last.pth")]) == 0
    assert _history(folder)[-1]["epoch"] == epoch + 1


def test_ddp_on_two_cpu_processes_equals_one_process_on_the_combined_batch(tmp_path):
    data = tmp_path / "four"
    generate_voc_dataset(data, num_images=4, num_test=1, seed=8, width=160, height=120, min_objects=1, max_objects=3)
    common = ["--net", "mb1-ssd-lite", "--num_workers", "0", "--no_progress", "--lr", "0.01", "--datasets", str(data),
              "--num_epochs", "1", "--no_augmentation", "--freeze_bn", "--seed", "0", "--use_cuda", "false"]
    initial = tmp_path / "initial.pth"
    torch.save(load_deterministic_weights(create_net("mb1-ssd-lite", 6)).state_dict(), initial)
    single, double = tmp_path / "single", tmp_path / "double"
    assert train_main(common + ["--batch_size", "4", "--checkpoint_folder", str(single), "--resume", str(initial)]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as probe:  # a free port, so parallel runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={port}", str(REPO_ROOT / "train_ssd.py")] + common
                            + ["--batch_size", "2", "--checkpoint_folder", str(double), "--resume", str(initial)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(_models(double)) == 1 and len(_history(double)) == 1  # rank 0 alone checkpoints
    a = torch.load(single / "last.pth", weights_only=True)["model"]
    b = torch.load(double / "last.pth", weights_only=True)["model"]
    changed = 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
        changed += int(not torch.equal(a[name], torch.load(initial, weights_only=True)[name]))
    assert changed > 0

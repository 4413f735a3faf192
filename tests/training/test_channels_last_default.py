"""--channels_last: on by default when training on the CPU, off when asked, and the net is laid out to match."""
import pytest
import torch

from vision.cli.train_ssd import build_parser, training_settings
from vision.datasets.synthetic import generate_voc_dataset
from vision.training.distributed import DistributedContext
from vision.training.run import TrainingRun


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate_voc_dataset(root, num_images=4, num_test=1, seed=5, width=96, height=72)
    return root


def _run(root, tmp_path, *flags):
    args = build_parser().parse_args(["--datasets", str(root), "--net", "mb1-ssd-lite", "--num_workers", "0",
                                      "--checkpoint_folder", str(tmp_path), "--device", "cpu", *flags])
    context = DistributedContext()
    return TrainingRun(training_settings(args, context), context)


def _conv_weight_is_channels_last(run) -> bool:
    weight = next(module.weight for module in run.net.modules() if isinstance(module, torch.nn.Conv2d)
                  and module.kernel_size == (3, 3) and module.groups == 1)
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


@pytest.mark.parametrize("flags, expected", [((), True), (("--channels_last",), True),
                                             (("--channels_last", "false"), False)])
def test_channels_last_defaults_on_for_the_cpu(tiny_voc, tmp_path, flags, expected):
    run = _run(tiny_voc, tmp_path, *flags)
    assert run.settings.channels_last is expected
    assert _conv_weight_is_channels_last(run) is expected

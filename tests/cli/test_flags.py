"""vision.cli.flags: the boolean flag type that train_ssd.py and eval_ssd.py share."""
import argparse

import pytest

from vision.cli import eval_ssd, train_ssd
from vision.cli.flags import str2bool


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("t", True), ("yes", True), ("Y", True),
                                         ("1", True), ("on", True), ("false", False), ("FALSE", False),
                                         ("f", False), ("no", False), ("n", False), ("0", False), ("off", False),
                                         (" true ", True), (True, True), (False, False)])
def test_str2bool_accepts_the_original_spellings(text, value):
    assert str2bool(text) is value


def test_str2bool_rejects_other_words():
    with pytest.raises(argparse.ArgumentTypeError, match="got 'maybe'"):
        str2bool("maybe")


def test_train_and_eval_parse_use_cuda_with_the_same_type():
    train = train_ssd.build_parser().parse_args(["--datasets", "d", "--use_cuda", "f"])
    evaluation = eval_ssd.build_parser().parse_args(["--trained_model", "m.pth", "--dataset", "d", "--use_cuda", "f",
                                                     "--use_2007_metric", "off"])
    assert train.use_cuda is False and evaluation.use_cuda is False and evaluation.use_2007_metric is False

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


def test_the_flags_name_every_net_type_of_the_registry():
    from vision.cli.flags import NET_TYPE_NAMES
    from vision.ssd.registry import NET_TYPES

    assert tuple(NET_TYPES) == NET_TYPE_NAMES


def test_the_shared_flags_are_defined_once_and_parse_the_same_everywhere():
    """--resolution has one help text, and the example, the live demo, export, evaluation and training all
    take it; the example and the live demo share the model and ONNX Runtime flags."""
    from vision.cli import convert_to_caffe2_models, eval_ssd, run_ssd_example, run_ssd_live_demo, train_ssd
    from vision.cli.flags import RESOLUTION_HELP

    parsers = [module.build_parser() for module in (convert_to_caffe2_models, eval_ssd, run_ssd_example,
                                                     run_ssd_live_demo, train_ssd)]
    for parser in parsers:
        (action,) = [action for action in parser._actions if "--resolution" in action.option_strings]
        assert action.help == RESOLUTION_HELP
    example, demo = parsers[2], parsers[3]
    shared = ["--onnx_threads", "--onnx_optimization", "--candidate_size", "--prob_threshold", "--top_k",
              "--device", "--backend", "--mb2_width_mult"]
    for flag in shared:
        helps = [next(a.help for a in parser._actions if flag in a.option_strings) for parser in (example, demo)]
        assert helps[0] == helps[1], flag

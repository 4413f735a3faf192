"""Flags shared by several commands, each defined once: the model arguments, the input size, the device,
the detection thresholds and ONNX Runtime's session options; and flag value types.

Names and defaults are the original toolkit's where it had the flag. No torch import: the example and the
live demo with ``--backend onnx`` run without PyTorch.
"""
from __future__ import annotations

import argparse

from vision.utils.misc import str2bool

__all__ = ["str2bool", "NET_TYPE_NAMES", "add_model_arguments", "add_input_size_argument", "add_device_argument",
           "add_detection_arguments", "add_backend_argument", "add_onnx_runtime_arguments", "add_engine_argument",
           "non_negative_int",
           "unit_fraction"]

# The registry's names (vision.ssd.registry.NET_TYPES, which imports torch); tests/cli/test_flags.py keeps
# them equal.
NET_TYPE_NAMES = ("vgg16-ssd", "mb1-ssd", "mb1-ssd-lite", "mb2-ssd-lite", "mb3-large-ssd-lite", "mb3-small-ssd-lite",
                  "sq-ssd-lite", "ssdlite320-mb3-large", "ssd300-vgg16")
BACKENDS = ("pytorch", "onnx")
ONNX_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# vision.ssd.engines.ENGINES (which imports torch); tests/cli/test_engine_flag.py keeps them equal.
ENGINE_NAMES = ("auto", "eager", "onnxruntime", "torchscript", "compile")

RESOLUTION_HELP = ("input size: N for NxN (e.g. 512) or WxH (e.g. 640x360); default: the size recorded with the "
                   "model (its .pth.json sidecar, an .onnx file's own, a resumed checkpoint's), else the net type's "
                   "native size. See docs/input_size.md")


def add_model_arguments(parser: argparse.ArgumentParser, onnx: bool = True) -> None:
    """The positional ``net_type model_path label_path`` of the example, the live demo and export, and
    ``--mb2_width_mult``. ``onnx``: the model may be an exported ``.onnx`` (with ``--backend onnx``)."""
    parser.add_argument("net_type", help=f"the net type: {', '.join(NET_TYPE_NAMES)}")
    model_help = ("the trained .pth (a state_dict or a training checkpoint), a zoo name or URL "
                  "(python -m vision.zoo list)")
    if onnx:
        model_help += ", or with --backend onnx the exported .onnx"
    parser.add_argument("model_path", help=model_help)
    parser.add_argument("label_path",
                        help="the model's label file (class names, BACKGROUND first); - for a zoo entry's labels")
    add_width_mult_argument(parser)


def add_width_mult_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mb2_width_mult", default=1.0, type=float, help="width multiplier of mb2-ssd-lite")


def add_input_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--resolution N`` or ``WxH``."""
    parser.add_argument("--resolution", default=None, help=RESOLUTION_HELP)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda|cuda:N``."""
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda:0 when available, else cpu; overrides --use_cuda)")


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--prob_threshold``, ``--top_k`` and ``--candidate_size`` of the example and the live demo."""
    parser.add_argument("--prob_threshold", type=float, default=0.4, help="minimum score of a detection")
    parser.add_argument("--top_k", type=int, default=10, help="most detections per class (-1: all)")
    parser.add_argument("--candidate_size", type=int, default=None,
                        help="boxes per class before NMS (default: the net type's, 200 for the original's types; "
                             "an ONNX postprocess graph's own)")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="pytorch", choices=BACKENDS,
                        help="pytorch (a .pth) or onnx (an .onnx made by convert_to_caffe2_models.py, run in ONNX "
                             "Runtime)")


def add_onnx_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """ONNX Runtime session options for ``--backend onnx``."""
    parser.add_argument("--onnx_threads", type=int, default=0,
                        help="with --backend onnx: ONNX Runtime intra-op threads (0: one per physical core)")
    parser.add_argument("--onnx_optimization", default="all", choices=ONNX_OPTIMIZATION_LEVELS,
                        help="with --backend onnx: ONNX Runtime graph optimisation level")


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    """``--engine``: what runs a ``.pth`` net's forward pass on the CPU (docs/deploy.md, "CPU engines")."""
    parser.add_argument("--engine", default="auto", choices=ENGINE_NAMES,
                        help="PyTorch backend on the CPU: auto (the fastest engine measured for the net type, built "
                             "once enough images come to pay for it), eager (the net itself), or onnxruntime, "
                             "torchscript, compile")


def unit_fraction(text: str) -> float:
    """A float flag value in (0, 1], such as an IoU threshold (an argparse error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a value in (0, 1], got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An int flag value that may not be negative (an argparse error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value

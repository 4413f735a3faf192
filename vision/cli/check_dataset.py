"""``python -m vision.datasets.check``: check a detection data set before training.

    python -m vision.datasets.check ROOT [--dataset_type auto] [--net mb1-ssd-lite] [--resolution 512]
                                         [--label_file labels.txt] [--report dataset_report.png]

Prints images per split, boxes per class, images without boxes, histograms of box width, height and
aspect ratio, how many boxes are smaller than the smallest prior of the net at that resolution (with the
advice to raise --resolution when many are), and every problem with its file. Writes a report figure
(class counts, box sizes and aspects against the priors', sample images with their boxes). Exits 1 when
it found problems that training would skip or stop at (unreadable images, malformed annotation files,
boxes without area or wholly outside the image, unknown classes), or could not read the data set, else 0.
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Optional, Sequence, Tuple

import numpy as np

from vision.datasets.check import NetPriors, check_dataset, format_report, write_figure
from vision.datasets.errors import DatasetError
from vision.ssd.registry import NET_TYPES, net_config
from vision.utils.image_size import parse_resolution

PROG = "python -m vision.datasets.check"  # as typed; argparse would name __main__.py


@functools.lru_cache(maxsize=16)  # building a net at a new size (to measure its maps) takes a while
def net_priors(net: str, input_size: Optional[Tuple[int, int]] = None) -> NetPriors:
    """The priors of net type `net` at `input_size` (width, height; None: the type's own size).
    Raises ValueError or RuntimeError for a size the net cannot take."""
    config = net_config(net, input_size)
    width, height = config.image_size
    return NetPriors(net, (width, height), np.asarray(config.priors, dtype=np.float64))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Check a detection data set before training.")
    parser.add_argument("root", help="dataset root (or a COCO JSON, YOLO data.yaml or CSV file)")
    parser.add_argument("--dataset_type", default="auto", choices=("auto", "voc", "coco", "yolo", "csv"))
    parser.add_argument("--net", default="mb1-ssd-lite", choices=list(NET_TYPES), help="whose priors to compare with")
    parser.add_argument("--resolution", default=None, help="the net's input size, as train_ssd.py takes it")
    parser.add_argument("--label_file", default=None, help="class names to index the labels by")
    parser.add_argument("--report", default="dataset_report.png", help="where to write the report figure")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (default sys.argv[1:]), check, print, write the figure; returns the exit status of the
    module docstring (a data set or flag that cannot be read: one ``error:`` line on stderr, 1)."""
    args = build_parser().parse_args(argv)
    try:
        priors = net_priors(args.net, parse_resolution(args.resolution) if args.resolution else None)
        report = check_dataset(args.root, priors, args.dataset_type, args.label_file,
                               priors_at=functools.partial(net_priors, args.net))
    except (DatasetError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"report figure: {write_figure(report, args.report)}")
    return 1 if report.has_skipped else 0

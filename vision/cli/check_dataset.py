"""``python -m vision.datasets.check``: check a detection data set before training.

    python -m vision.datasets.check ROOT [--dataset_type auto] [--net mb1-ssd-lite] [--resolution 512]
                                         [--priors default|auto|FILE.json] [--label_file labels.txt]
                                         [--report dataset_report.png]

Prints images per split, boxes per class, images without boxes, histograms of box width, height and
aspect ratio, the prior coverage per class (the share of the training boxes, difficult and crowd ones left
out as training does, that have a prior of the net at IoU >= the match threshold, on its real grid at that
input size, and the median best IoU; with ``--priors auto`` before and after a fit to the data), the
measured advice for a class below 95 %, and every problem with its file. Writes a report figure (class
counts, box sizes against each map's prior sizes, sample images) and, beside it under the same stem,
``dataset_report.json`` with the counts, the problems and the coverage, together with the net, the size
and the prior table used. With ``--priors auto`` the fitted table is written there too
(``<stem>_priors.json``), for ``train_ssd.py --priors``.
Exits 1 when it found problems that training would skip or stop at (unreadable images, malformed
annotation files, boxes without area or wholly outside the image, unknown classes), or could not read
the data set; 3 when the report cannot be written (``--report`` in a read-only folder, or a folder itself:
checked before the data set is read, and the printout is not lost when a later write fails); else 0.
A ``--report`` name without an extension gets ``.png``; an existing folder gets ``dataset_report.png`` in it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from vision.cli.flags import add_input_size_argument, add_width_mult_argument
from vision.datasets.check import CheckReport, PriorSizes, check_dataset, format_report, report_document, write_figure
from vision.datasets.errors import DatasetError
from vision.ssd.coverage import PriorGrid
from vision.ssd.prior_choice import PriorChoice, choose_priors, write_prior_table
from vision.ssd.registry import NET_TYPES
from vision.utils.atomic import check_writable, write_text
from vision.utils.image_size import parse_resolution

PROG = "python -m vision.datasets.check"  # as typed; argparse would name __main__.py
EXIT_REPORT_NOT_WRITTEN = 3  # apart from 1, which says the data has problems


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Check a detection data set before training.")
    parser.add_argument("root", help="dataset root (or a COCO JSON, YOLO data.yaml or CSV file)")
    parser.add_argument("--dataset_type", default="auto", choices=("auto", "voc", "coco", "yolo", "csv", "open_images"),
                        help="the data set's format (default: detected); open_images: open_images_downloader.py's "
                             "folder")
    parser.add_argument("--net", default="mb1-ssd-lite", choices=list(NET_TYPES), help="whose priors to measure")
    add_input_size_argument(parser)
    add_width_mult_argument(parser)
    parser.add_argument("--priors", default="default",
                        help="the prior table to measure: default (the net type's own), auto (fitted to the training "
                             "boxes, as train_ssd.py --priors auto does: a preview) or a .json table")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --priors auto fit, as train_ssd.py --seed")
    parser.add_argument("--label_file", default=None, help="class names to index the labels by")
    parser.add_argument("--report", default="dataset_report.png",
                        help="where to write the report figure (.png added to a name without an extension; a "
                             "folder gets dataset_report.png); the JSON report goes beside it")
    return parser


def prior_sizes(choice: PriorChoice, net: str) -> PriorSizes:
    """Each map's prior widths and heights in input pixels, for the figure."""
    config = choice.config
    grid = PriorGrid.from_priors(config.priors, config.feature_map_shapes, config.prior_rule.priors_per_location())
    scale = [config.image_size[0], config.image_size[1]]
    return PriorSizes(net, tuple(config.image_size), tuple(level * scale for level in grid.sizes) if grid else ())


def coverage_document(choice: PriorChoice, net: str) -> dict:
    """The coverage part of ``dataset_report.json``: per class the covered share and the median best IoU,
    with the net, the input size and the prior table measured (None: the net type's own)."""
    document = {"net": net, "image_size": list(choice.config.image_size),
                "priors": choice.table.to_document(net) if choice.table is not None else None}
    document.update(choice.coverage.to_document())
    if choice.before is not None:
        document["before_fit"] = choice.before.to_document()
    document["advice"] = list(choice.advice)
    return document


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (default sys.argv[1:]), check, print, write the figure and the JSON; returns the exit
    status of the module docstring (a data set or flag that cannot be read: one ``error:`` line, 1)."""
    args = build_parser().parse_args(argv)
    report_path = args.report if Path(args.report).suffix else f"{args.report}.png"
    if os.path.isdir(args.report):  # a folder gets the report inside it, as the example's --output
        report_path = os.path.join(args.report, "dataset_report.png")
    try:
        check_writable(report_path, flag="--report")  # before the check, which reads every image
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REPORT_NOT_WRITTEN
    try:
        image_size = parse_resolution(args.resolution) if args.resolution else None
        report = check_dataset(args.root, args.dataset_type, args.label_file)
        boxes, labels = report.training_boxes()
        choice = choose_priors(args.priors, args.net, image_size, boxes, labels, report.contents.class_names,
                               seed=args.seed, mb2_width_mult=args.mb2_width_mult)
    except (DatasetError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    print_coverage(choice)
    try:
        figure = write_figure(report, report_path, prior_sizes(choice, args.net))
        print(f"report figure: {figure}")
        print(f"report data: {write_report_json(report, choice, args.net, figure)}")
        if choice.fit is not None:
            path = write_prior_table(str(figure.with_name(f"{figure.stem}_priors.json")), choice.table, args.net)
            print(f"fitted prior table: {path} (train_ssd.py --priors {path})")
    except OSError as error:
        print(f"error: {error}; the report printed above was not saved", file=sys.stderr)
        return EXIT_REPORT_NOT_WRITTEN
    return 1 if report.has_skipped else 0


def print_coverage(choice: PriorChoice) -> None:
    for warning in choice.warnings:
        print(f"warning: {warning}")
    if choice.before is not None:
        print("\n".join(choice.before.lines()))
    print("\n".join(choice.coverage.lines()))
    for line in choice.advice:
        print(f"advice: {line}")


def write_report_json(report: CheckReport, choice: PriorChoice, net: str, figure: Path) -> Path:
    """``<figure stem>.json`` beside the figure: the report's counts and problems and the coverage."""
    document = report_document(report)
    document.update(coverage_document(choice, net))
    path = figure.with_suffix(".json")
    write_text(path, json.dumps(document, indent=1) + "\n")
    return path

"""``python -m vision.datasets.convert``: convert a detection data set between VOC, COCO, YOLO and CSV.

    python -m vision.datasets.convert SRC DST --to voc|coco|yolo|csv [--from auto|voc|coco|yolo|csv|open_images]
                                      [--copy]

What is written is described in ``vision.datasets.convert``. Warnings (images left out, YOLO's dropped
flags) are one ``warning:`` line each on stderr. Exits 1 with one ``error:`` line when nothing could be
written (unknown class, non-empty DST, unreadable source), else 0.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Optional, Sequence

from vision.datasets.convert import SOURCE_FORMATS, TARGET_FORMATS, convert
from vision.datasets.errors import DatasetError
from vision.utils.labels import LabelFileError


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


PROG = "python -m vision.datasets.convert"  # as typed; argparse would name __main__.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="Convert a detection data set between VOC, COCO, YOLO and CSV.")
    parser.add_argument("source", help="dataset root (or a COCO JSON, YOLO data.yaml or CSV file)")
    parser.add_argument("destination", help="new or empty folder to write")
    parser.add_argument("--to", required=True, choices=TARGET_FORMATS, help="format to write")
    parser.add_argument("--from", dest="source_format", default="auto", choices=SOURCE_FORMATS + ("auto",),
                        help="format of the source, open_images for open_images_downloader.py's folder "
                             "(default: detected)")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    parser.add_argument("--label_file", help="class names to index the source's labels by (default: its own)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (default sys.argv[1:]), convert, print a summary line; returns the exit status."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warnings
    try:
        summary = convert(args.source, args.destination, args.to, args.source_format, args.copy, args.label_file)
    except (DatasetError, LabelFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {summary.images} images and {summary.boxes} boxes from {summary.source_format} {args.source} as "
          f"{summary.target_format} to {args.destination}"
          + (f"; left out {len(summary.left_out)} unusable image(s) (see warnings)" if summary.left_out else ""))
    return 0

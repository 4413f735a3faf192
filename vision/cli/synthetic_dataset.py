"""``python -m vision.datasets.synthetic``: write a synthetic data set of coloured shapes.

    python -m vision.datasets.synthetic --root data/shapes --num_images 2000 --num_test 200 --seed 0
    python -m vision.datasets.synthetic --root data/small --small_objects   # 640x480, 10-40 pixel objects
    python -m vision.datasets.synthetic --root data/mixed --mixed_sizes     # a small, a middle, a large class

What is written is described in ``vision.datasets.synthetic``. Exits 0 after one summary line; 1 with one
``error:`` line, and nothing written, for a ``--root`` that is not new or empty or a bad value.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from vision.datasets.convert import check_new_or_empty
from vision.datasets.synthetic import MIXED_SIZES, SMALL_OBJECTS, generate_dataset

PROG = "python -m vision.datasets.synthetic"  # as typed; argparse would name __main__.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Write a synthetic VOC-format data set of coloured shapes.")
    parser.add_argument("--root", required=True, help="folder to write (created if missing)")
    parser.add_argument("--num_images", type=int, default=200, help="trainval images")
    parser.add_argument("--num_test", type=int, default=None, help="test images (default num_images // 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--min_objects", type=int, default=1)
    parser.add_argument("--max_objects", type=int, default=4)
    parser.add_argument("--empty_fraction", type=float, default=0.0,
                        help="share of images with no object at all")
    parser.add_argument("--min_size", type=float, default=0.15, help="smallest object, fraction of the shorter side")
    parser.add_argument("--max_size", type=float, default=0.5, help="largest object, fraction of the shorter side")
    parser.add_argument("--num_workers", type=int, default=os.cpu_count() or 1, help="processes to render with")
    parser.add_argument("--format", default="voc", choices=("voc", "coco", "yolo", "csv"),
                        help="layout to write (the same images and boxes in each)")
    parser.add_argument("--small_objects", action="store_true",
                        help="640x480 images with 10-40 pixel objects (sets --width, --height, --min_size, --max_size)")
    parser.add_argument("--mixed_sizes", action="store_true",
                        help="640x480 images, 2-8 objects of three classes of very different sizes: circles 6-9 %%, "
                             "squares 15-30 %%, triangles 40-70 %% of the shorter side (a small class, as in "
                             "microscopy sets)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (default sys.argv[1:]), write the data set, print a summary line; returns 0, or 1 after
    one ``error:`` line (a root that holds files, as convert refuses it; a bad value)."""
    args = build_parser().parse_args(argv)
    size = dict(width=args.width, height=args.height, min_size=args.min_size, max_size=args.max_size)
    if args.small_objects:
        size.update(SMALL_OBJECTS)
    counts = dict(min_objects=args.min_objects, max_objects=args.max_objects)
    if args.mixed_sizes:
        preset = dict(MIXED_SIZES)
        counts.update(min_objects=preset.pop("min_objects"), max_objects=preset.pop("max_objects"))
        size.update(preset)
    try:
        check_new_or_empty(args.root)  # the generator would replace a data set's files of the same names
        summary = generate_dataset(args.root, args.format, num_images=args.num_images, num_test=args.num_test,
                                   seed=args.seed, empty_fraction=args.empty_fraction, num_workers=args.num_workers,
                                   **counts, **size)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(summary.trainval_ids)} trainval + {len(summary.test_ids)} test images ({args.format}), "
          f"{summary.num_objects} objects, classes {', '.join(summary.class_names)}, to {summary.root}")
    return 0

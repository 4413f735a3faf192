"""``python -m vision.datasets.synthetic``: write a synthetic data set of coloured shapes.

    python -m vision.datasets.synthetic --root data/shapes --num_images 2000 --num_test 200 --seed 0
    python -m vision.datasets.synthetic --root data/small --small_objects   # 640x480, 10-40 pixel objects

What is written is described in ``vision.datasets.synthetic``. Exits 0 after one summary line.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from vision.datasets.synthetic import SMALL_OBJECTS, generate_dataset

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
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (default sys.argv[1:]), write the data set, print a summary line; returns 0. Bad values
    raise ValueError, as before."""
    args = build_parser().parse_args(argv)
    size = dict(width=args.width, height=args.height, min_size=args.min_size, max_size=args.max_size)
    if args.small_objects:
        size.update(SMALL_OBJECTS)
    summary = generate_dataset(args.root, args.format, num_images=args.num_images, num_test=args.num_test,
                               seed=args.seed, min_objects=args.min_objects, max_objects=args.max_objects,
                               empty_fraction=args.empty_fraction, num_workers=args.num_workers, **size)
    print(f"wrote {len(summary.trainval_ids)} trainval + {len(summary.test_ids)} test images ({args.format}), "
          f"{summary.num_objects} objects, classes {', '.join(summary.class_names)}, to {summary.root}")
    return 0

"""``python -m vision.zoo``: list the named pretrained weights, or download one into torch's hub cache.

    python -m vision.zoo list
    python -m vision.zoo get mb2-ssd-lite-voc
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from vision import zoo
from vision.ssd import weights


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vision.zoo", description="Named pretrained weights.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the table: name, kind, net type, size, metric, cached")
    get = commands.add_parser("get", help="download an entry into the hub cache and print its path")
    get.add_argument("name", help="a zoo name, a torchvision weight name (Enum.MEMBER) or a URL")
    return parser


def print_table() -> None:
    header = ("name", "kind", "net type", "size", "published metric", "cached")
    rows = [header] + zoo.table_rows()
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"cache: {zoo.checkpoints_dir()}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print_table()
        return 0
    try:
        if zoo.find_entry(args.name) is None and not zoo.is_url(args.name):
            raise zoo.ZooError(f"{args.name}: not a zoo name (python -m vision.zoo list), torchvision weight name "
                               "or URL")
        print(weights.resolve(args.name))
    except zoo.ZooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was saved", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

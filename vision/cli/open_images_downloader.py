"""The code behind `open_images_downloader.py`: fetch the Open Images boxes and images of chosen classes.

Steps, each skipped where its output is already complete in `--root`:
1. `class-descriptions-boxable.csv`, against which the requested class names are checked before
   anything large is downloaded; then `{train,validation,test}-annotations-bbox.csv`.
2. The boxes of the requested classes, filtered as the original toolkit does, written to
   `sub-<split>-annotations-bbox.csv` (what `OpenImagesDataset` reads).
3. The images, from the S3 bucket `open-images-dataset`, to `<split>/<ImageID>.jpg`.

Exit status: 0 when everything is there; 1 when a download failed (missing images are listed in
`failed-<split>.txt`); 2 for a mistake in the flags (unknown class, malformed class spec);
130 when interrupted. Re-running the same command resumes.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.contrib.logging import logging_redirect_tqdm

from vision.datasets.open_images_download_files import DownloadError, fetch_file, write_atomically
from vision.datasets.open_images_download_images import (
    DEFAULT_BUCKET,
    DownloadReport,
    ImageTask,
    download_images,
    make_s3_client,
)
from vision.datasets.open_images_download_selection import (
    SPLITS,
    SelectionError,
    format_counts,
    limit_images,
    parse_class_requests,
    read_annotations,
    read_class_descriptions,
    resolve_classes,
    select_boxes,
)

logger = logging.getLogger("open_images_downloader")

DEFAULT_ANNOTATIONS_URL = "https://storage.googleapis.com/openimages/2018_04"
CLASS_DESCRIPTIONS_FILE = "class-descriptions-boxable.csv"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Flags of the original downloader under their names, plus the new ones documented in docs/."""
    parser = argparse.ArgumentParser(
        description="Download the Open Images boxes and images of the given classes.")
    parser.add_argument("--root", required=True,
                        help="folder for the CSVs and images (created if missing)")
    parser.add_argument("--class_names", required=True,
                        help="comma-separated Name[:filter[:fraction]], e.g. 'Handgun::0.5,Shotgun:~group'; "
                             "filter is empty, 'group' or '~group'")
    parser.add_argument("--include_depiction", action="store_true",
                        help="keep boxes on drawings and other depictions (dropped by default)")
    parser.add_argument("--num_workers", type=_positive_int, default=10,
                        help="threads downloading images (default 10)")
    parser.add_argument("--retry", type=_positive_int, default=10,
                        help="attempts per file before giving up (default 10)")
    parser.add_argument("--retry_backoff", type=_non_negative_float, default=1.0,
                        help="seconds before the first retry, doubling after each (default 1)")
    parser.add_argument("--filter_file", default="",
                        help="text file of ImageIDs to exclude, one a line")
    parser.add_argument("--remove_overlapped", action="store_true",
                        help="drop the single boxes of images that also hold a group box")
    parser.add_argument("--max_images", "--max-images", dest="max_images", type=int, default=None,
                        help="at most this many images over all splits (0 or negative: no limit)")
    parser.add_argument("--stats_only", action="store_true",
                        help="download the CSVs and print the counts; write no sub-CSV, download no image")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random choices of fractions and --max_images, so that a "
                             "re-run selects the same images (default 0)")
    parser.add_argument("--annotations_url", default=DEFAULT_ANNOTATIONS_URL,
                        help="base URL of the CSVs: <url>/class-descriptions-boxable.csv and "
                             f"<url>/<split>/<split>-annotations-bbox.csv (default {DEFAULT_ANNOTATIONS_URL})")
    parser.add_argument("--s3_endpoint_url", default=None,
                        help="S3 endpoint holding the bucket open-images-dataset (default: AWS)")
    return parser


def read_filter_file(path: Path) -> set[str]:
    """ImageIDs listed in `path`, one a line, blank lines ignored. Raises SelectionError if unreadable."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SelectionError(f"--filter_file {path}: {error.strerror or error}") from None
    return {line.strip() for line in text.splitlines() if line.strip()}


def annotations_file_url(base_url: str, split: str) -> str:
    """Where the public release keeps one split's box annotations, under `base_url`."""
    return f"{base_url.rstrip('/')}/{split}/{split}-annotations-bbox.csv"


def write_selection(root: Path, selections: Mapping[str, pd.DataFrame]) -> None:
    """Write each split's boxes to `<root>/sub-<split>-annotations-bbox.csv`, atomically."""
    for split, boxes in selections.items():
        path = root / f"sub-{split}-annotations-bbox.csv"
        write_atomically(path, lambda part, boxes=boxes: boxes.to_csv(part, index=False))
        logger.info("saved %d boxes of %s to %s", len(boxes), split, path)


def write_failure_lists(root: Path, report: DownloadReport) -> None:
    """List the ImageIDs still missing in `<root>/failed-<split>.txt`; remove lists that are now empty.

    The files hold one ImageID a line, so one can be passed back as `--filter_file`.
    """
    for split in SPLITS:
        path = root / f"failed-{split}.txt"
        missing = sorted(task.image_id for task in report.failed if task.split == split)
        if missing:
            write_atomically(path, lambda part, missing=missing: part.write_text("\n".join(missing) + "\n"))
            logger.error("%d %s images could not be downloaded; their ids are in %s", len(missing), split, path)
        else:
            path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    """Do the three steps of the module docstring for parsed `args`; returns the exit status.

    Raises SelectionError for mistakes in the flags and DownloadError / ValueError for CSVs that
    cannot be fetched or read; `main` turns them into one-line errors.
    """
    root = Path(args.root).expanduser()
    requests = parse_class_requests(args.class_names)
    excluded = read_filter_file(Path(args.filter_file)) if args.filter_file else set()
    root.mkdir(parents=True, exist_ok=True)
    fetch = dict(attempts=args.retry, backoff_s=args.retry_backoff)

    descriptions_path = root / CLASS_DESCRIPTIONS_FILE
    fetch_file(f"{args.annotations_url.rstrip('/')}/{CLASS_DESCRIPTIONS_FILE}", descriptions_path, **fetch)
    classes = resolve_classes(read_class_descriptions(descriptions_path), requests, str(descriptions_path))

    annotation_paths = {split: root / f"{split}-annotations-bbox.csv" for split in SPLITS}
    for split, path in annotation_paths.items():
        fetch_file(annotations_file_url(args.annotations_url, split), path, **fetch)

    rng = np.random.default_rng(args.seed)
    selections = {}
    for split, path in annotation_paths.items():
        logger.info("reading %s", path)
        selections[split] = select_boxes(
            read_annotations(path, classes["id"]), classes, requests,
            include_depiction=args.include_depiction, excluded_images=excluded,
            remove_overlapped=args.remove_overlapped, rng=rng)
    selections = limit_images(selections, args.max_images, rng)
    class_names = [request.name for request in requests]
    for split, boxes in selections.items():
        logger.info("%s", format_counts(split, boxes, class_names))
    if args.stats_only:
        return EXIT_OK

    write_selection(root, selections)
    # A fixed order (split, then ImageID) makes runs comparable and resumes predictable.
    tasks = [ImageTask(split, image_id) for split, boxes in selections.items()
             for image_id in sorted(boxes["ImageID"].unique())]
    for split in SPLITS:
        (root / split).mkdir(exist_ok=True)
    report = download_images(
        make_s3_client(args.s3_endpoint_url, args.num_workers), DEFAULT_BUCKET, root, tasks,
        num_workers=args.num_workers, attempts=args.retry, backoff_s=args.retry_backoff)
    write_failure_lists(root, report)
    return EXIT_FAILED if report.failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default sys.argv[1:]), run, and return the exit status of the module docstring."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s - %(levelname)s - %(message)s")
    try:
        with logging_redirect_tqdm():
            return run(args)
    except SelectionError as error:
        logger.error("%s", error)
        return EXIT_USAGE
    except (DownloadError, ValueError, OSError) as error:
        logger.error("%s", error)
        return EXIT_FAILED
    except KeyboardInterrupt:
        logger.error("interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED

"""Converting a data set between the VOC, COCO, YOLO and CSV layouts, or from the Open Images downloader's
layout to any of them (the command is ``python -m vision.datasets.convert``, in ``vision.cli.convert_dataset``).

What is written is what the source loads as: the same images (hard-linked, or copied with --copy or
across file systems; never re-encoded), boxes (clipped to the image, boxes without area dropped, with
the warnings the loader gives), classes, difficult / crowd flags and splits. Between VOC, COCO and CSV
the round trip is exact. YOLO cannot carry the flags: difficult / crowd boxes are written as ordinary
ones, listed in a warning, and its normalised coordinates bring boxes back within a small fraction of a
pixel. DST must be a new or empty folder.
"""
from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

from vision.datasets.annotated import DatasetContents, LoadedImage, cleaned_boxes, unknown_class_error
from vision.datasets.coco import read_coco, write_coco
from vision.datasets.csv_dataset import read_csv_dataset, write_csv_dataset
from vision.datasets.detect import detect_format
from vision.datasets.errors import BadDataWarning, BadImageError, DatasetError, warn_bad_data
from vision.datasets.images import read_image_size
from vision.datasets.open_images import read_open_images
from vision.datasets.voc_dataset import read_voc, write_voc
from vision.datasets.yolo import read_yolo, write_yolo
from vision.utils.atomic import staged_path

TARGET_FORMATS = ("voc", "coco", "yolo", "csv")
SOURCE_FORMATS = TARGET_FORMATS + ("open_images",)  # the downloader's layout is read, not written


def read_contents(path, dataset_type: str = "auto", label_file=None) -> DatasetContents:
    """Every split of the data set at `path` (dataset_type one of SOURCE_FORMATS or "auto")."""
    if dataset_type == "auto":
        dataset_type = detect_format(path)
    readers = {"voc": read_voc, "coco": read_coco, "yolo": read_yolo, "csv": read_csv_dataset,
               "open_images": read_open_images}
    if dataset_type not in readers:
        raise DatasetError(f"{path}: cannot read {dataset_type!r} data sets here; choose one of {SOURCE_FORMATS}")
    return readers[dataset_type](path, label_file)


def check_new_or_empty(destination) -> None:
    """DatasetError unless ``destination`` is missing or an empty folder: nothing a user had is overwritten."""
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise DatasetError(f"{destination}: already exists and is not an empty folder (nothing was written)")


def _writer(target: str) -> Callable:
    return {"voc": write_voc, "coco": write_coco, "yolo": write_yolo, "csv": write_csv_dataset}[target]


def load_images(contents: DatasetContents) -> Dict[str, LoadedImage]:
    """Every usable image of `contents` as its loader yields it (see the module docstring). Images with a
    malformed annotation or an unreadable header are left out with a BadDataWarning naming the file."""
    display_offset = 1.0 if contents.format == "voc" else 0.0
    loaded: Dict[str, LoadedImage] = {}
    for image_id, entry in contents.images.items():
        if entry.malformed is not None:
            warn_bad_data(f"leaving out image {image_id}: annotation {entry.source} is malformed ({entry.malformed})")
            continue
        size = entry.size
        if size is None or not entry.image_path.is_file():
            try:
                size = read_image_size(entry.image_path)
            except BadImageError as error:
                warn_bad_data(f"leaving out image {image_id}: {error}")
                continue
        boxes, labels, difficult = cleaned_boxes(entry, contents.class_names, display_offset)
        loaded[image_id] = LoadedImage(entry.image_path, boxes, labels, difficult, size)
    return loaded


def place_file(source: Path, target: Path, copy: bool = False) -> None:
    """Hard-link `source` to `target` (copy when asked, or when linking fails, e.g. across file systems).
    A copy is written atomically, so an interrupted conversion leaves no partial image under `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    # No fsync per image: the destination is a new folder that a crash leaves to be written again anyway.
    with staged_path(target, fsync=False) as temporary:
        shutil.copy2(source, temporary)


@dataclass
class ConversionSummary:
    source_format: str
    target_format: str
    images: int
    boxes: int
    left_out: List[str]
    flags_dropped: List[str]  # YOLO: "image_id: class [box]" of difficult / crowd boxes written as ordinary


def convert(source, destination, to: str, source_format: str = "auto", copy: bool = False,
            label_file=None) -> ConversionSummary:
    """Write the data set at `source` to `destination` in format `to`. Raises DatasetError for an unknown
    class in the source, a non-empty destination or an unknown format; per-image problems warn."""
    if to not in TARGET_FORMATS:
        raise DatasetError(f"--to must be one of {TARGET_FORMATS}, got {to!r}")
    destination = Path(destination)
    check_new_or_empty(destination)
    contents = read_contents(source, source_format, label_file)
    if contents.unknown:
        raise unknown_class_error(f"{contents.format} data set {contents.root}", contents.unknown,
                                  "its class list", contents.class_names)
    loaded = load_images(contents)
    flags_dropped = []
    if to == "yolo":
        for image_id, image in loaded.items():
            flags_dropped += [f"{image_id}: {contents.class_names[label]} {box}" for box, label in
                              zip(image.boxes[image.is_difficult > 0].tolist(), image.labels[image.is_difficult > 0])]
        if flags_dropped:
            shown = "; ".join(flags_dropped[:20]) + (" ..." if len(flags_dropped) > 20 else "")
            warnings.warn(f"YOLO has no difficult/crowd flag: {len(flags_dropped)} flagged box(es) are written as "
                          f"ordinary ones: {shown}", BadDataWarning, stacklevel=2)
    destination.mkdir(parents=True, exist_ok=True)
    _writer(to)(contents, destination, loaded, lambda src, dst: place_file(src, dst, copy))
    left_out = [image_id for image_id in contents.images if image_id not in loaded]
    return ConversionSummary(contents.format, to, len(loaded), sum(len(image.labels) for image in loaded.values()),
                             left_out, flags_dropped)

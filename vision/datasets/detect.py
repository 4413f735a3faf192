"""Telling a data set's format from its files (``--dataset_type auto``)."""
from __future__ import annotations

from pathlib import Path

from .errors import DatasetError

FORMATS = ("voc", "open_images", "coco", "yolo", "csv")


def detect_format(path) -> str:
    """The format of a dataset root (or annotation file), checked in this order:
    voc: Annotations/ and ImageSets/; open_images: sub-*-annotations-bbox.csv; coco:
    annotations/instances_*.json or a JSON with images, annotations and categories; yolo: data.yaml;
    csv: a .csv with the columns image,xmin,ymin,xmax,ymax,label. Raises DatasetError naming the path
    and what was looked for when none matches."""
    from .coco import coco_annotation_files
    from .csv_dataset import COLUMNS, csv_files
    from .yolo import yaml_file

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist")
    if path.is_dir() and (path / "Annotations").is_dir() and (path / "ImageSets").is_dir():
        return "voc"
    if path.is_dir() and any(path.glob("sub-*-annotations-bbox.csv")):
        return "open_images"
    if (path.is_dir() or path.suffix.lower() == ".json") and coco_annotation_files(path):
        return "coco"
    if yaml_file(path) is not None:
        return "yolo"
    if csv_files(path):
        return "csv"
    raise DatasetError(f"cannot tell the format of {path}: no VOC Annotations/ + ImageSets/, Open Images "
                       f"sub-*-annotations-bbox.csv, COCO annotations/instances_*.json or COCO JSON, YOLO "
                       f"data.yaml, or CSV with the columns {','.join(COLUMNS)}")

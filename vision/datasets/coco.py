"""COCO JSON data sets: COCO's own layout and the one labelling tools (CVAT, Label Studio, Roboflow) export.

Layouts:
    <root>/annotations/instances_<split>.json  + <root>/<split>/ (COCO: train2017/, val2017/) or <root>/images/
    <root>/annotations.json + <root>/images/   (a lone JSON is the whole set; the JSON path may be given too)

Training takes the instances_*train* file(s); evaluation instances_*test*, else instances_*val*. Other
annotation files (captions_*, person_keypoints_*) are ignored. ``file_name`` is resolved against the split
folder next to annotations/, then images/, then the JSON's own folder. Categories become labels 1.. in
category-id order. ``bbox`` [x, y, w, h] is 0-based pixels: corners [x, y, x + w, y + h]. ``iscrowd``
objects are "difficult": not trained on, and ignored by the VOC metric. Images without annotations are
background. An image's id is its file_name without the suffix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.atomic import write_text
from ..utils.labels import BACKGROUND, read_label_file
from .annotated import DatasetContents, ImageEntry, LoadedImage, SplitDataset
from .errors import DatasetError, warn_bad_data

_REQUIRED_KEYS = ("images", "annotations", "categories")


def is_coco_json(path: Path) -> bool:
    """True when `path` is a JSON object with images, annotations and categories (reads the file)."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in _REQUIRED_KEYS)


def coco_annotation_files(path) -> Dict[str, Path]:
    """Split name -> instances JSON of a COCO root (annotations/instances_<split>.json), or of a lone JSON
    file or a folder holding one (split named after the file). Empty when there is none."""
    path = Path(path)
    if path.is_file():
        return {_split_name(path): path}
    found = {file.stem[len("instances_"):]: file for file in sorted((path / "annotations").glob("instances_*.json"))}
    if found:
        return found
    return {file.stem: file for file in sorted(path.glob("*.json")) if is_coco_json(file)}


def _split_name(path: Path) -> str:
    return path.stem[len("instances_"):] if path.stem.startswith("instances_") else path.stem


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except ValueError as error:
        raise DatasetError(f"{path}: malformed JSON: {error}") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read: {error.strerror or error}") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(key), list) for key in _REQUIRED_KEYS):
        raise DatasetError(f"{path}: not a COCO detection file (needs the lists {', '.join(_REQUIRED_KEYS)})")
    return data


def _image_folders(json_path: Path, split: str) -> List[Path]:
    base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    return [base / split, base / "images", json_path.parent]


def _resolve(folders: Sequence[Path], file_name: str) -> Path:
    for folder in folders:
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    return folders[0] / file_name


def image_id_of(file_name: str) -> str:
    """Our image id of a COCO file_name: the relative path without its suffix ("a/b.jpg" -> "a/b")."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    return str(path.with_suffix("")) if path.suffix else str(path)


@dataclass
class COCOGroundTruth:
    """Where the original ground truth of a COCO split is, for scoring with pycocotools against it:
    annotation_file; image_ids: data set image id -> COCO image id; category_ids: the COCO category id of
    each class label (index 0, background, is None)."""

    annotation_file: Path
    image_ids: Dict[str, int]
    category_ids: List[Optional[int]]


def _category_order(categories: list, path: Path) -> List[Tuple[int, str]]:
    pairs = []
    for number, category in enumerate(categories):
        try:
            pairs.append((int(category["id"]), str(category["name"])))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: category {number} needs an integer id and a name") from None
    pairs = sorted(pairs)
    # Class names are compared ignoring case everywhere (label files, other roots), so two such categories
    # would quietly become one class.
    seen: Dict[str, Tuple[int, str]] = {}
    for category_id, name in pairs:
        first = seen.setdefault(name.lower(), (category_id, name))
        if first[0] != category_id:
            raise DatasetError(f"{path}: categories {first[1]!r} (id {first[0]}) and {name!r} (id {category_id}) "
                               "differ only in case, and class names are compared ignoring case; rename or merge "
                               "one of them")
    return pairs


def read_coco(path, label_file=None) -> DatasetContents:
    """Every split of a COCO root (or lone JSON) as DatasetContents.

    Class names: BACKGROUND + category names in id order (every split file must agree), or label_file's
    (categories matched by name, ignoring case). Per-annotation problems: a category id not in
    categories, or a category name not in label_file, is listed in ``unknown`` with the file and the
    annotation's id; an annotation without a 4-number bbox or with an unknown image id is dropped with a
    warning naming the file. Raises DatasetError for malformed JSON, no instances file, or two categories
    whose names differ only in case.
    """
    path = Path(path)
    files = coco_annotation_files(path)
    if not files:
        raise DatasetError(f"COCO data set {path}: no annotations/instances_*.json and no JSON with "
                           f"{', '.join(_REQUIRED_KEYS)}")
    root = path.parent if path.is_file() else path
    loaded = {split: _load_json(file) for split, file in files.items()}
    orders = {split: _category_order(data["categories"], files[split]) for split, data in loaded.items()}
    first_split = next(iter(orders))
    for split, order in orders.items():
        if [name for _, name in order] != [name for _, name in orders[first_split]]:
            raise DatasetError(f"{files[split]}: categories {order} differ from those of {files[first_split]} "
                               f"{orders[first_split]}")
    category_names = [BACKGROUND] + [name for _, name in orders[first_split]]
    class_names = tuple(read_label_file(label_file)) if label_file is not None else tuple(category_names)
    lookup = {name.lower(): index for index, name in enumerate(class_names)}

    images: Dict[str, ImageEntry] = {}
    splits: Dict[str, List[str]] = {}
    unknown: List[str] = []
    ground_truth: Dict[str, Tuple[Path, Dict[str, int], Dict[int, int]]] = {}
    for split, data in loaded.items():
        file = files[split]
        label_of_category = {category_id: lookup.get(name.lower(), -1) for category_id, name in orders[split]}
        entries, coco_ids = _split_entries(file, split, data, label_of_category, unknown)
        splits[split] = [entry.image_id for entry in entries]
        for entry in entries:
            images.setdefault(entry.image_id, entry)
        category_of_label = {label: category_id for category_id, label in label_of_category.items() if label > 0}
        ground_truth[split] = (file, coco_ids, category_of_label)
    return DatasetContents("coco", root, class_names, images, splits, unknown,
                           extra={"coco_ground_truth": ground_truth})


def _split_entries(file: Path, split: str, data: dict, label_of_category: Dict[int, int], unknown: List[str]):
    folders = _image_folders(file, split)
    entries: Dict[int, ImageEntry] = {}
    coco_ids: Dict[str, int] = {}
    rows: Dict[int, List[Tuple[List[float], int, int]]] = {}
    for number, image in enumerate(data["images"]):
        try:
            coco_id, file_name = int(image["id"]), str(image["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{file}: image {number} needs an integer id and a file_name") from None
        image_id = image_id_of(file_name)
        if image_id in coco_ids:
            raise DatasetError(f"{file}: file_name {file_name!r} appears twice (image ids {coco_ids[image_id]} "
                               f"and {coco_id})")
        width, height = image.get("width"), image.get("height")
        size = (int(width), int(height)) if width and height else None
        entries[coco_id] = ImageEntry(image_id, _resolve(folders, file_name), file, *ImageEntry.empty_arrays(), size)
        coco_ids[image_id] = coco_id
        rows[coco_id] = []
    dropped = []
    for number, annotation in enumerate(data["annotations"]):
        where = f"annotation id {annotation.get('id', number)}"
        bbox = annotation.get("bbox")
        if annotation.get("image_id") not in rows or not isinstance(bbox, list) or len(bbox) != 4:
            dropped.append(where)
            continue
        try:
            x, y, w, h = (float(value) for value in bbox)
        except (TypeError, ValueError):
            dropped.append(where)
            continue
        category = annotation.get("category_id")
        label = label_of_category.get(category, -1) if isinstance(category, int) else -1
        if label < 0:
            known = "not in categories" if category not in label_of_category else "whose name is not in the label file"
            unknown.append(f"{file}: {where}: category_id {category!r} ({known})")
        rows[annotation["image_id"]].append(([x, y, x + w, y + h], label, 1 if annotation.get("iscrowd") else 0))
    if dropped:
        warn_bad_data(f"{file}: dropped {len(dropped)} annotation(s) without a 4-number bbox or with an image_id "
                      f"not in images: {', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}")
    for coco_id, objects in rows.items():
        if objects:
            entry = entries[coco_id]
            entry.boxes = np.array([box for box, _, _ in objects], dtype=np.float32)
            entry.labels = np.array([label for _, label, _ in objects], dtype=np.int64)
            entry.is_difficult = np.array([crowd for _, _, crowd in objects], dtype=np.uint8)
    return list(entries.values()), coco_ids


class COCODataset(SplitDataset):
    """One split of a COCO data set (see the module docstring), with the samples of
    vision.datasets.annotated.AnnotatedImageDataset.

    COCODataset(root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
                label_file=None); root: a folder or the JSON file itself.
    """

    def __init__(self, root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
                 label_file=None):
        contents = read_coco(root, label_file)
        source = str(label_file) if label_file is not None else "the categories"
        self._init_from(contents, source, transform, target_transform, is_test, keep_difficult)
        self._split_names = [name for name in contents.splits if set(contents.splits[name]) & set(self.ids)]

    @property
    def coco_ground_truth(self) -> Optional[COCOGroundTruth]:
        """The original JSON of this split, when the split is one file (else None)."""
        chosen = [name for name in self.contents.splits
                  if name in self._split_names and set(self.contents.splits[name]) == set(self.ids)]
        if not chosen:
            return None
        file, coco_ids, category_of_label = self.contents.extra["coco_ground_truth"][chosen[0]]
        categories = [None] + [category_of_label.get(label) for label in range(1, len(self.class_names))]
        return COCOGroundTruth(file, {image_id: coco_ids[image_id] for image_id in self.ids}, categories)


def write_coco(contents: DatasetContents, destination: Path, loaded: Dict[str, LoadedImage], place) -> None:
    """Write images/<id><suffix> (through ``place(source, target)``, which links or copies) and
    annotations/instances_<split>.json for every split of `contents`, with the boxes of `loaded`."""
    categories = [{"id": label, "name": name, "supercategory": ""}
                  for label, name in enumerate(contents.class_names) if label > 0]
    (destination / "annotations").mkdir(parents=True, exist_ok=True)
    file_names = {}
    for image_id, image in loaded.items():
        file_names[image_id] = image_id + image.path.suffix
        place(image.path, destination / "images" / file_names[image_id])
    for split, ids in contents.splits.items():
        images, annotations = [], []
        for number, image_id in enumerate(ids, start=1):
            if image_id not in loaded:
                continue
            image = loaded[image_id]
            width, height = image.size
            images.append({"id": number, "file_name": file_names[image_id], "width": width, "height": height})
            for box, label, crowd in zip(image.boxes.astype(np.float64).tolist(), image.labels.tolist(),
                                         image.is_difficult.tolist()):
                w, h = box[2] - box[0], box[3] - box[1]
                annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": label,
                                    "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": int(crowd)})
        document = {"info": {"description": f"converted from {contents.format} {contents.root}"},
                    "images": images, "annotations": annotations, "categories": categories}
        write_text(destination / "annotations" / f"instances_{split}.json", json.dumps(document))

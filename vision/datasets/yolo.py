"""YOLO data sets in Ultralytics' layout.

    <root>/data.yaml            names (a list, or a dict index -> name), train / val / test paths
    <root>/images/<split>/...   images (a split path may also be a .txt file listing images, or a list)
    <root>/labels/<split>/*.txt one "class cx cy w h" line per box, normalised to 0..1 (a segmentation
                                line "class x1 y1 x2 y2 x3 y3 ..." is used as its polygon's bounding box)

A label file is found by replacing the last ``images`` component of the image path with ``labels`` and
the suffix with .txt, as Ultralytics does; a missing or empty label file means background. YOLO has no
difficult or crowd flag. Pixel corners are (cx -+ w / 2) * width, (cy -+ h / 2) * height, with the size
read from the image file's header. An image's id is its path below its split folder, without suffix.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.atomic import write_text
from ..utils.labels import BACKGROUND, read_label_file
from .annotated import (
    IMAGE_SUFFIXES,
    DatasetContents,
    ImageEntry,
    LoadedImage,
    SplitDataset,
    evaluation_split_names,
    training_split_names,
)
from .errors import BadImageError, DatasetError
from .images import read_image_size

# data.yaml keys that are not splits.
_NOT_SPLITS = {"path", "names", "nc", "download", "yaml_file", "kpt_shape", "flip_idx", "channels", "splits"}
_SPLIT_KEYS_WRITTEN = "splits"  # the keys this toolkit's writer made real splits (the others are aliases)


def yaml_file(path) -> Optional[Path]:
    """data.yaml of a root (or `path` itself when it is a .yaml/.yml file); None when there is none."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    for name in ("data.yaml", "data.yml"):
        if (path / name).is_file():
            return path / name
    return None


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DatasetError(f"{path}: malformed YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: malformed YAML: expected a mapping with names and train/val paths")
    return data


def _names(data: dict, path: Path) -> List[str]:
    names = data.get("names")
    if isinstance(names, dict):
        try:
            keyed = {int(key): str(value) for key, value in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: names keys must be class indices 0, 1, ...") from None
        if sorted(keyed) != list(range(len(keyed))):
            raise DatasetError(f"{path}: names keys must be 0..{len(keyed) - 1}, got {sorted(keyed)}")
        return [keyed[index] for index in range(len(keyed))]
    if isinstance(names, list) and names:
        return [str(name) for name in names]
    raise DatasetError(f"{path}: needs names (a list, or a dict index -> name)")


def label_path(image_path: Path) -> Path:
    """Ultralytics' rule: the last "images" component becomes "labels", the suffix ".txt"."""
    parts = list(image_path.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _split_images(base: Path, value, yaml_path: Path) -> List[Tuple[Path, Path]]:
    """(image path, folder its id is relative to) for a split value: a folder, a .txt list, or a list of them."""
    values = value if isinstance(value, list) else [value]
    found: List[Tuple[Path, Path]] = []
    for item in values:
        location = Path(str(item))
        location = location if location.is_absolute() else base / location
        if location.is_dir():
            found += [(file, location) for file in sorted(location.rglob("*")) if file.suffix.lower() in IMAGE_SUFFIXES]
        elif location.is_file() and location.suffix == ".txt":
            for line in location.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    image = Path(line.strip())
                    image = image if image.is_absolute() else (location.parent / image)
                    found.append((image, image.parent))
        else:
            raise DatasetError(f"{yaml_path}: split path {item!r} ({location}) is neither a folder nor a .txt list")
    return found


def _read_labels(path: Path, num_classes: int, unknown: List[str], polygons: Optional[List[str]] = None):
    """(normalised cx, cy, w, h float64 (n, 4), labels (n,) with -1 unknown, malformed reason or None).
    A segmentation line ``class x1 y1 x2 y2 x3 y3 ...`` (three or more points) becomes its polygon's
    bounding box, as Ultralytics does; ``"<file>:<line>"`` is appended to ``polygons`` for each."""
    rows, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        is_polygon = len(fields) >= 7 and len(fields) % 2 == 1
        if len(fields) != 5 and not is_polygon:
            return None, None, (f"line {number} has {len(fields)} fields, expected 5 (class cx cy w h) or a polygon "
                                "(class x1 y1 x2 y2 x3 y3 ...)")
        try:
            values = [float(field) for field in fields[1:]]
            class_index = int(fields[0])
        except ValueError:
            return None, None, f"line {number} is not numeric: {line.strip()!r}"
        if is_polygon:
            points = np.array(values, np.float64).reshape(-1, 2)
            low, high = points.min(axis=0), points.max(axis=0)
            values = [*((low + high) / 2), *(high - low)]
            if polygons is not None:
                polygons.append(f"{path}:{number}")
        if not 0 <= class_index < num_classes:
            unknown.append(f"{path}:{number}: class index {class_index} (data.yaml names {num_classes} classes)")
            class_index = -2  # becomes -1 after the background shift
        rows.append(values)
        labels.append(class_index + 1)
    return np.array(rows, np.float64).reshape(-1, 4), np.array(labels, np.int64), None


def read_yolo(path, label_file=None) -> DatasetContents:
    """Every split of a YOLO root (or its data.yaml) as DatasetContents. Class names: BACKGROUND + names
    (or label_file's, matched by name). A class index out of range is listed in ``unknown`` with the file
    and line; a label line without 5 numbers makes the image's annotation malformed (skipped). Raises
    DatasetError for malformed YAML, missing names or a split path that does not exist."""
    path = Path(path)
    yaml_path = yaml_file(path)
    if yaml_path is None:
        raise DatasetError(f"YOLO data set {path}: no data.yaml")
    data = _load_yaml(yaml_path)
    names = _names(data, yaml_path)
    base = Path(str(data["path"])) if data.get("path") else yaml_path.parent
    base = base if base.is_absolute() else yaml_path.parent / base
    split_keys = data.get(_SPLIT_KEYS_WRITTEN)
    if not isinstance(split_keys, list):
        split_keys = [key for key, value in data.items() if key not in _NOT_SPLITS and isinstance(value, (str, list))
                      and value]
    class_names = tuple(read_label_file(label_file)) if label_file is not None else (BACKGROUND, *names)
    lookup = {name.lower(): index for index, name in enumerate(class_names)}
    remap = np.array([-1] + [lookup.get(name.lower(), -1) for name in names], np.int64)  # yolo label + 1 -> ours
    images: Dict[str, ImageEntry] = {}
    splits: Dict[str, List[str]] = {}
    unknown: List[str] = []
    notes: List[str] = []
    polygons: List[str] = []
    for key in split_keys:
        if key not in data or not data[key]:
            continue
        ids = []
        for image_path, folder in _split_images(base, data[key], yaml_path):
            image_id = str(image_path.relative_to(folder).with_suffix("").as_posix())
            existing = images.get(image_id)
            if existing is not None and existing.image_path.resolve() != image_path.resolve() \
                    and not _same_file(existing.image_path, image_path):
                image_id = f"{key}/{image_id}"
                existing = images.get(image_id)
            if existing is None:
                images[image_id] = _entry(image_id, image_path, len(names), remap, names, unknown, notes, polygons)
            ids.append(image_id)
        splits[str(key)] = ids
    notes += _orphan_labels(images.values())
    if polygons:
        # Said once for the data set, not once a line: a segmentation set has a polygon on every line.
        message = (f"{yaml_path}: {len(polygons)} label line(s) are segmentation polygons (first {polygons[0]}); "
                   "each is used as its bounding box, as Ultralytics does")
        notes.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return DatasetContents("yolo", yaml_path.parent, class_names, images, splits, unknown, notes)


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.samefile(second) or (first.read_bytes() == second.read_bytes()
                                          and label_path(first).read_bytes() == label_path(second).read_bytes())
    except OSError:
        return False


def _entry(image_id: str, image_path: Path, num_classes: int, remap: np.ndarray, names: Sequence[str],
           unknown: List[str], notes: List[str], polygons: Optional[List[str]] = None) -> ImageEntry:
    labels_file = label_path(image_path)
    try:
        size = read_image_size(image_path)
    except BadImageError:
        size = None  # the sample is skipped, with a warning, when the image is read
    if not labels_file.is_file():
        notes.append(f"{image_path}: image without a label file ({labels_file}; background)")
        return ImageEntry(image_id, image_path, labels_file, *ImageEntry.empty_arrays(), size)
    relative, labels, malformed = _read_labels(labels_file, num_classes, unknown, polygons)
    if malformed is not None:
        return ImageEntry(image_id, image_path, labels_file, *ImageEntry.empty_arrays(), size, malformed=malformed)
    in_range = labels >= 0  # labels here: YOLO class index + 1, or -1 out of range
    mapped = np.where(in_range, remap[np.clip(labels, 0, None)], -1)
    for index in np.flatnonzero(in_range & (mapped < 0)):
        unknown.append(f"{labels_file}: box {index + 1}: class {names[labels[index] - 1]!r} is not in the label file")
    labels = mapped
    if size is None:
        return ImageEntry(image_id, image_path, labels_file, *ImageEntry.empty_arrays(), None)
    width, height = size
    centre, half = relative[:, :2], relative[:, 2:] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1) * np.array([width, height, width, height])
    return ImageEntry(image_id, image_path, labels_file, boxes.astype(np.float32), labels,
                      np.zeros(len(labels), np.uint8), size)


def _orphan_labels(entries) -> List[str]:
    folders = {label_path(entry.image_path).parent for entry in entries}
    used = {label_path(entry.image_path) for entry in entries}
    return [f"{file}: label file without an image" for folder in sorted(folders) if folder.is_dir()
            for file in sorted(folder.glob("*.txt")) if file not in used]


class YOLODataset(SplitDataset):
    """One split of a YOLO data set (see the module docstring), with the samples of
    vision.datasets.annotated.AnnotatedImageDataset.

    YOLODataset(root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
                label_file=None); root: a folder with data.yaml, or the YAML file itself.
    """

    def __init__(self, root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
                 label_file=None):
        contents = read_yolo(root, label_file)
        source = str(label_file) if label_file is not None else "data.yaml names"
        self._init_from(contents, source, transform, target_transform, is_test, keep_difficult)


def write_yolo(contents: DatasetContents, destination: Path, loaded: Dict[str, LoadedImage], place) -> None:
    """Write images/<split>/<id><suffix> (through ``place``), labels/<split>/<id>.txt (normalised, 9
    significant digits: well below a pixel) and data.yaml with every split of `contents`. When no split
    is called train or val, those keys are added as aliases of the splits the training and evaluation
    rules pick, so Ultralytics can use the folder; ``splits`` lists the real ones."""
    import yaml

    for split, ids in contents.splits.items():
        for image_id in ids:
            if image_id not in loaded:
                continue
            image = loaded[image_id]
            place(image.path, destination / "images" / split / (image_id + image.path.suffix))
            target = destination / "labels" / split / f"{image_id}.txt"
            width, height = image.size
            boxes = image.boxes.astype(np.float64) / np.array([width, height, width, height])
            centre, extent = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
            lines = [f"{label - 1} {cx:.9g} {cy:.9g} {w:.9g} {h:.9g}\n"
                     for label, (cx, cy), (w, h) in zip(image.labels.tolist(), centre.tolist(), extent.tolist())]
            write_text(target, "".join(lines), fsync=False)
    names = list(contents.class_names[1:])
    document: Dict[str, object] = {split: f"images/{split}" for split in contents.splits}
    split_names = list(contents.splits)
    for alias, rule in (("train", training_split_names), ("val", evaluation_split_names)):
        if alias not in document and rule(split_names):
            chosen = rule(split_names)
            document[alias] = [f"images/{name}" for name in chosen] if len(chosen) > 1 else f"images/{chosen[0]}"
    if set(document) != set(split_names):
        document[_SPLIT_KEYS_WRITTEN] = split_names
    document["nc"] = len(names)
    document["names"] = names
    write_text(destination / "data.yaml", yaml.safe_dump(document, sort_keys=False, allow_unicode=True))

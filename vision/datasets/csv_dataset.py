"""CSV data sets: one row per box, ``image,xmin,ymin,xmax,ymax,label`` in 0-based pixels.

    <root>/annotations.csv    a split column picks each row's split; without one the file is the whole set
    <root>/train.csv, val.csv, test.csv   or one file per split (the split is the file's stem)
    <root>/labels.txt         optional class order; else the sorted labels of every file

Optional columns: ``split`` and ``difficult`` (0/1). ``image`` is relative to the CSV file's folder. An image
with no boxes is a row with empty coordinates and label. An image's id is its path without the suffix and
without a leading ``images/``.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Dict, List

import numpy as np

from ..utils.atomic import write_text
from ..utils.labels import BACKGROUND, read_label_file
from .annotated import DatasetContents, ImageEntry, LoadedImage, SplitDataset
from .errors import BadImageError, DatasetError
from .images import read_image_size

COLUMNS = ["image", "xmin", "ymin", "xmax", "ymax", "label"]
_COORDINATES = ["xmin", "ymin", "xmax", "ymax"]


def _header(path: Path) -> List[str]:
    import pandas as pd

    try:
        return [str(column).strip() for column in pd.read_csv(path, nrows=0).columns]
    except (ValueError, OSError, UnicodeDecodeError):
        return []


def csv_files(path) -> List[Path]:
    """The CSV files of a root that have the required columns (or `path` itself when it is a .csv file)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix.lower() == ".csv" else []
    return [file for file in sorted(path.glob("*.csv")) if set(COLUMNS) <= set(_header(file))]


def _read_table(path: Path):
    import pandas as pd

    # pandas before 3 parses floats with a fast parser that can miss the last bit; round_trip is exact
    # (pandas 3 parses exactly by default and deprecates the option).
    precision = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    try:
        table = pd.read_csv(path, dtype={"image": str, "label": str, "split": str}, skipinitialspace=True,
                            **precision)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: malformed CSV: {' '.join(str(error).split())}") from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise DatasetError(f"{path}: needs the columns {','.join(COLUMNS)}; missing {','.join(missing)}")
    for column in _COORDINATES:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
            raise DatasetError(f"{path}:{line}: {column} is not a number: {table[column][bad].iloc[0]!r}")
        table[column] = values
    if table["image"].isna().any():
        line = int(np.flatnonzero(table["image"].isna().to_numpy())[0]) + 2
        raise DatasetError(f"{path}:{line}: no image")
    empty = table[_COORDINATES].isna()
    partial = empty.any(axis=1) & ~empty.all(axis=1)
    no_label = ~empty.all(axis=1) & table["label"].isna()
    for problem, mask in (("some coordinates are empty", partial), ("a box without a label", no_label)):
        if mask.any():
            raise DatasetError(f"{path}:{int(np.flatnonzero(mask.to_numpy())[0]) + 2}: {problem}")
    return table


def image_id_of(relative: str) -> str:
    path = PurePosixPath(relative.replace("\\", "/"))
    if path.parts and path.parts[0] == "images" and len(path.parts) > 1:
        path = PurePosixPath(*path.parts[1:])
    return str(path.with_suffix("")) if path.suffix else str(path)


def read_csv_dataset(path, label_file=None) -> DatasetContents:
    """Every split of a CSV root (or one CSV file) as DatasetContents. Class names: label_file, else
    labels.txt beside the CSV, else BACKGROUND + the sorted labels of every file. A label not in a given
    class list is listed in ``unknown`` with the file and line. Image sizes come from the image headers
    (boxes are clipped to them). Raises DatasetError for a missing column, a non-numeric coordinate or
    a half-empty row, naming the file and line."""
    path = Path(path)
    files = csv_files(path)
    if not files:
        raise DatasetError(f"CSV data set {path}: no .csv file with the columns {','.join(COLUMNS)}")
    root = path.parent if path.is_file() else path
    tables = {file: _read_table(file) for file in files}
    if label_file is None and (root / "labels.txt").is_file():
        label_file = root / "labels.txt"
    if label_file is not None:
        class_names = tuple(read_label_file(label_file))
    else:
        labels = sorted({str(label) for table in tables.values() for label in table["label"].dropna()})
        class_names = (BACKGROUND, *labels)
    lookup = {name.lower(): index for index, name in enumerate(class_names)}
    images: Dict[str, ImageEntry] = {}
    splits: Dict[str, List[str]] = {}
    unknown: List[str] = []
    for file, table in tables.items():
        split_of_row = table["split"].fillna(file.stem).astype(str).str.strip() if "split" in table.columns \
            else None
        labels = table["label"].map(lambda name: lookup.get(str(name).strip().lower(), -1) if isinstance(name, str)
                                    else 0).to_numpy(np.int64)
        for row in np.flatnonzero(labels < 0):
            unknown.append(f"{file}:{row + 2}: {table['label'].iloc[row]!r}")
        difficult = (table["difficult"].fillna(0).astype(float).to_numpy() > 0) if "difficult" in table.columns \
            else np.zeros(len(table), bool)
        boxes = table[_COORDINATES].to_numpy(np.float32)
        has_box = ~np.isnan(boxes).any(axis=1)
        keys = table["image"].astype(str).str.strip()
        groups = keys.groupby(keys, sort=False).indices
        split_names = split_of_row if split_of_row is not None else None
        for relative, rows in groups.items():
            image_id = image_id_of(relative)
            for split in (sorted(set(split_names.iloc[rows])) if split_names is not None else [file.stem]):
                split_ids = splits.setdefault(split, [])
                if image_id not in split_ids:
                    split_ids.append(image_id)
            if image_id in images:
                continue
            rows = rows[has_box[rows]]
            image_path = file.parent / relative
            try:
                size = read_image_size(image_path)
            except BadImageError:
                size = None  # skipped, with a warning, when the image is read
            images[image_id] = ImageEntry(image_id, image_path, file, boxes[rows], labels[rows],
                                          difficult[rows].astype(np.uint8), size)
    return DatasetContents("csv", root, class_names, images, splits, unknown)


class CSVDataset(SplitDataset):
    """One split of a CSV data set (see the module docstring), with the samples of
    vision.datasets.annotated.AnnotatedImageDataset.

    CSVDataset(root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
               label_file=None); root: a folder or one .csv file.
    """

    def __init__(self, root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
                 label_file=None):
        contents = read_csv_dataset(root, label_file)
        source = str(label_file) if label_file is not None else "labels.txt"
        self._init_from(contents, source, transform, target_transform, is_test, keep_difficult)


def write_csv_dataset(contents: DatasetContents, destination: Path, loaded: Dict[str, LoadedImage], place) -> None:
    """Write images/<id><suffix> (through ``place``), one <split>.csv per split (with a difficult
    column; coordinates written exactly: float32 values read back unchanged) and labels.txt."""
    import pandas as pd

    from .labels import store_labels

    destination.mkdir(parents=True, exist_ok=True)
    relative = {}
    for image_id, image in loaded.items():
        relative[image_id] = f"images/{image_id}{image.path.suffix}"
        place(image.path, destination / relative[image_id])
    for split, ids in contents.splits.items():
        records = []
        for image_id in ids:
            if image_id not in loaded:
                continue
            image = loaded[image_id]
            if len(image.labels) == 0:
                records.append({"image": relative[image_id]})
            for box, label, flag in zip(image.boxes.astype(np.float64).tolist(), image.labels.tolist(),
                                        image.is_difficult.tolist()):
                records.append({"image": relative[image_id], "xmin": box[0], "ymin": box[1], "xmax": box[2],
                                "ymax": box[3], "label": contents.class_names[label], "difficult": int(flag)})
        table = pd.DataFrame.from_records(records, columns=COLUMNS + ["difficult"])
        table["difficult"] = table["difficult"].astype("Int64")
        write_text(destination / f"{split}.csv", table.to_csv(index=False))
    store_labels(destination / "labels.txt", contents.class_names)

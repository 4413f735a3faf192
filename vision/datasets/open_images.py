"""Open Images data sets as written by the original toolkit's open_images_downloader.

Layout of a root:
    sub-{train,validation,test}-annotations-bbox.csv   ImageID, XMin, XMax, YMin, YMax (0..1), ClassName, ...
    {train,validation,test}/<ImageID>.jpg
"""
from pathlib import Path
from typing import List

import numpy as np

from ..transforms.box_ops import clip_boxes, valid_box_mask
from ..utils.labels import BACKGROUND, read_label_file
from .annotated import DatasetContents, ImageEntry
from .errors import BadImageError, DatasetError, warn_bad_data
from .images import apply_transforms, read_image_size, read_or_skip, read_rgb_image, transform_image

_COLUMNS = ["ImageID", "XMin", "YMin", "XMax", "YMax", "ClassName"]
_MAX_IDS_SHOWN = 10


def _concatenated_ranges(begins: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """np.concatenate([np.arange(b, e) for b, e in zip(begins, ends)]) without the Python loop."""
    lengths = ends - begins
    offsets = np.repeat(begins - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(lengths.sum()) + offsets


def annotation_file(root, dataset_type: str) -> Path:
    return Path(root) / f"sub-{dataset_type}-annotations-bbox.csv"


def _read_csv(path: Path):
    import pandas as pd

    if not path.is_file():
        raise DatasetError(f"Open Images annotation file {path} not found")
    try:
        table = pd.read_csv(path, usecols=_COLUMNS, dtype={"ImageID": str, "ClassName": str})
    except ValueError as error:  # a missing column
        raise DatasetError(f"{path}: needs the columns {_COLUMNS}: {error}") from error
    return table


def training_class_names(root) -> List[str]:
    """BACKGROUND + the sorted class names of <root>/sub-train-annotations-bbox.csv (ClassName column)."""
    import pandas as pd

    path = annotation_file(root, "train")
    if not path.is_file():
        raise DatasetError(f"{path} not found: {Path(root)} is not an Open Images root (for another format, choose "
                           "it with --dataset_type); the class list comes from this training CSV, or from "
                           "eval_ssd.py's --label_file")
    names = pd.read_csv(path, usecols=["ClassName"], dtype={"ClassName": str})["ClassName"].dropna().unique()
    return [BACKGROUND] + sorted(names)


def read_open_images(root, label_file=None) -> DatasetContents:
    """Every split of an Open Images root (each ``sub-<split>-annotations-bbox.csv`` with its images in
    ``<split>/``) as DatasetContents, for the checker and for conversion (``vision.datasets.convert``).

    Boxes: the CSV's 0..1 corners times the size read from the image's header, 0-based pixel corners, as
    written (not clipped); an image that cannot be read has no size and no boxes (it is reported, or left
    out, when read). Class names: ``label_file``'s, else BACKGROUND + the sorted classes of the training CSV
    (of every CSV without one), as OpenImagesDataset; a class not in them is listed in ``unknown``. An
    image id found in two splits is ``<split>/<ImageID>`` in the later one. Raises DatasetError when there
    is no annotation CSV or one lacks a column."""
    root = Path(root)
    tables = {split: _read_csv(annotation_file(root, split)).dropna(subset=["ImageID"])
              for split in ("train", "validation", "test") if annotation_file(root, split).is_file()}
    if not tables:
        raise DatasetError(f"Open Images root {root}: no sub-<train|validation|test>-annotations-bbox.csv")
    if label_file is not None:
        class_names = tuple(read_label_file(label_file))
    elif "train" in tables:
        class_names = tuple(training_class_names(root))
    else:
        found = set().union(*(set(table["ClassName"].dropna().astype(str)) for table in tables.values()))
        class_names = (BACKGROUND, *sorted(found))
    lookup = {name.lower(): index for index, name in enumerate(class_names)}
    images, splits, unknown = {}, {}, []
    for split, table in tables.items():
        path = annotation_file(root, split)
        splits[split] = []
        for image_id, rows in table.groupby("ImageID", sort=False):
            image_id = str(image_id)
            key = image_id if image_id not in images else f"{split}/{image_id}"
            image_path = root / split / f"{image_id}.jpg"
            names = rows["ClassName"].astype(str).tolist()
            labels = np.array([lookup.get(name.lower(), -1) for name in names], np.int64)
            unknown += [f"{path}: image {image_id}: class {name!r}" for name, label in zip(names, labels) if label < 0]
            try:
                width, height = read_image_size(image_path)
            except BadImageError:
                images[key] = ImageEntry(key, image_path, path, *ImageEntry.empty_arrays(), None)
            else:
                relative = rows[["XMin", "YMin", "XMax", "YMax"]].to_numpy(dtype=np.float64)
                boxes = (relative * np.array([width, height, width, height])).astype(np.float32)
                images[key] = ImageEntry(key, image_path, path, boxes, labels, np.zeros(len(labels), np.uint8),
                                         (width, height))
            splits[split].append(key)
    return DatasetContents("open_images", root, class_names, images, splits, unknown)


class OpenImagesDataset:
    """One split of an Open Images root.

    OpenImagesDataset(root, transform=None, target_transform=None, dataset_type="train",
                      balance_data=False, label_file=None)
      dataset_type: "train", "validation" or "test".
      balance_data: down-sample frequent classes: for each class keep at most as many images as the rarest
        class has (images drawn with np.random), the original's rule.
      label_file: class names to use; by default BACKGROUND + the sorted classes of the TRAINING CSV, for every
        split, so a class has the same index in all splits. A class in this split's CSV that is not in the
        list raises DatasetError naming the file and class.

    Attributes and methods as VOCDataset: ids, class_names (BACKGROUND first), class_dict, __len__,
    __getitem__ -> (image RGB uint8, boxes float32 (n, 4) pixel corners = relative * (width, height) as the
    original, labels int64) or None for an unreadable image, get_image, get_annotation (is_difficult all
    zero), _read_image. Boxes are clipped to 0..1; rows with no area are dropped with a warning naming the
    CSV and image ids.
    """

    def __init__(self, root, transform=None, target_transform=None, dataset_type="train", balance_data=False,
                 label_file=None):
        self.root = Path(root)
        self.transform = transform
        self.target_transform = target_transform
        self.dataset_type = dataset_type.lower()
        self.split_names = [self.dataset_type]
        self.all_split_names = [split for split in ("train", "validation", "test")
                                if annotation_file(self.root, split).is_file()]
        self.balance_data = balance_data
        if label_file is not None:
            self.class_names = tuple(read_label_file(label_file))
        else:
            self.class_names = tuple(training_class_names(self.root))
        self.class_dict = {name: index for index, name in enumerate(self.class_names)}
        self.ids, self._boxes, self._labels, self._starts = self._read_annotations()
        self.class_stat = None
        if balance_data:
            self._balance()

    def _read_annotations(self):
        import pandas as pd

        path = annotation_file(self.root, self.dataset_type)
        table = _read_csv(path).sort_values("ImageID", kind="stable").reset_index(drop=True)
        table = table.dropna(subset=["ImageID"])
        known = {name: index for index, name in enumerate(self.class_names)}
        labels = table["ClassName"].map(known)
        if labels.isna().any():
            unknown = sorted(table.loc[labels.isna(), "ClassName"].astype(str).unique())
            raise DatasetError(f"{path}: class name(s) {unknown[:_MAX_IDS_SHOWN]} are not in the class list "
                               f"{list(self.class_names)[:20]}{' ...' if len(self.class_names) > 20 else ''}")
        boxes = table[["XMin", "YMin", "XMax", "YMax"]].to_numpy(dtype=np.float32)
        clip_boxes(boxes, 1.0, 1.0)
        keep = valid_box_mask(boxes)
        image_ids = table["ImageID"].to_numpy(dtype=object)
        if not keep.all():
            bad_ids = sorted(set(image_ids[~keep]))
            warn_bad_data(f"{path}: dropped {int((~keep).sum())} box(es) with no area (XMin >= XMax or YMin >= YMax)"
                          f" in image(s) {bad_ids[:_MAX_IDS_SHOWN]}{' ...' if len(bad_ids) > _MAX_IDS_SHOWN else ''}")
        # The table is sorted by ImageID, so each image's rows are contiguous and codes never decrease.
        codes, ids = pd.factorize(table["ImageID"], sort=False)
        # Images whose boxes were all dropped stay, as images without objects.
        box_starts = np.searchsorted(codes[keep], np.arange(len(ids) + 1))
        boxes, labels = boxes[keep], labels.to_numpy(dtype=np.int64)[keep]
        if len(ids) == 0:
            raise DatasetError(f"{path}: lists no images, so there is nothing to "
                               f"{'train on' if self.dataset_type == 'train' else 'evaluate'}; add rows to it")
        return [str(image_id) for image_id in ids], boxes, labels, box_starts

    def _balance(self):
        """Keep, for every class, min(images of that class, images of the rarest class) of its images."""
        image_of_box = np.repeat(np.arange(len(self.ids)), np.diff(self._starts))
        pairs = np.unique(np.stack([self._labels, image_of_box], axis=1), axis=0)  # (class, image), unique
        counts = np.bincount(pairs[:, 0], minlength=len(self.class_names))[1:]
        present = counts[counts > 0]
        if len(present) == 0:
            return
        self.min_image_num = int(present.min())
        class_starts = np.searchsorted(pairs[:, 0], np.arange(len(self.class_names) + 1))
        chosen = [np.random.permutation(pairs[begin:end, 1])[:self.min_image_num]
                  for begin, end in zip(class_starts[1:-1], class_starts[2:]) if end > begin]
        selected = np.unique(np.concatenate(chosen))
        begins, ends = self._starts[selected], self._starts[selected + 1]
        box_index = _concatenated_ranges(begins, ends)
        self.ids = [self.ids[i] for i in selected]
        self._boxes, self._labels = self._boxes[box_index], self._labels[box_index]
        self._starts = np.concatenate([[0], np.cumsum(ends - begins)])
        self.class_stat = {self.class_names[label]: int(count) for label, count in
                           zip(*np.unique(self._labels, return_counts=True))}

    def __len__(self) -> int:
        return len(self.ids)

    def relative_annotation(self, index):
        """``(boxes float32 (n, 4) corner form relative to the image (0..1), labels int64 (n,))`` of sample
        ``index``, read from the CSV (no image is read)."""
        start, end = self._starts[index], self._starts[index + 1]
        return self._boxes[start:end].copy(), self._labels[start:end].copy()

    def __getitem__(self, index):
        image_id = self.ids[index]
        image = read_or_skip(self._read_image, image_id)
        if image is None:
            return None
        boxes, labels = self.relative_annotation(index)
        height, width = image.shape[:2]
        boxes *= np.array([width, height, width, height], dtype=np.float32)
        return apply_transforms(self.transform, self.target_transform, image, boxes, labels)

    def get_image(self, index):
        """The image of sample `index` after `transform` (called with the image alone), or None with a
        BadDataWarning for an unreadable image."""
        image_id = self.ids[index]
        return transform_image(self.transform, read_or_skip(self._read_image, image_id))

    def get_annotation(self, index):
        """(image_id, (boxes float32 (n, 4) pixel corners, labels int64 (n,), is_difficult uint8 zeros (n,))).
        The size comes from the image header only; for an unreadable image the arrays are empty (a warning
        names it, and get_image gives None, so evaluation skips it)."""
        image_id = self.ids[index]
        boxes, labels = self.relative_annotation(index)
        try:
            width, height = read_image_size(self.image_path(image_id))
        except BadImageError as error:
            warn_bad_data(f"skipping image {image_id}: {error}")
            boxes, labels = boxes[:0], labels[:0]
            width = height = 0
        boxes *= np.array([width, height, width, height], dtype=np.float32)
        return image_id, (boxes, labels, np.zeros(len(labels), dtype=np.uint8))

    def image_path(self, image_id: str) -> Path:
        return self.root / self.dataset_type / f"{image_id}.jpg"

    def _read_image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3); raises BadImageError naming the file if it is missing or corrupt."""
        return read_rgb_image(self.image_path(image_id))

    def __repr__(self) -> str:
        return (f"OpenImagesDataset(root={str(self.root)!r}, dataset_type={self.dataset_type!r}, "
                f"images={len(self.ids)}, boxes={len(self._labels)}, classes={len(self.class_names) - 1}, "
                f"balance_data={self.balance_data})")

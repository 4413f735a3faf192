"""What every annotation format shares: the images of a data set as its files describe them, the split
rule, and one dataset class that yields samples from them (read or skip, clip, drop, transform).

A format module (voc_dataset, coco, yolo, csv_dataset) only reads its files into :class:`DatasetContents`
(boxes as written, unknown classes listed, not raised); :class:`AnnotatedImageDataset` then checks and
cleans one split of it, so that every format yields the same samples for the same images and boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..transforms.box_ops import clip_boxes, valid_box_mask
from .errors import DatasetError, warn_bad_data
from .images import apply_transforms, read_or_skip, read_rgb_image, transform_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_ERRORS_SHOWN = 10


@dataclass
class ImageEntry:
    """One image and its objects as its annotation file says, before any cleaning.

    boxes: float32 (n, 4) 0-based pixel corners [x1, y1, x2, y2], as written (maybe inverted or outside the
    image); labels: int64 (n,) indices into the class list, -1 for an unknown class; is_difficult: uint8
    (n,) (VOC <difficult>, COCO iscrowd); size: (width, height) from the annotation or the image header,
    None when unknown; source: the annotation file that warnings name; malformed: why the annotation
    cannot be used (the sample is then skipped), else None.
    """

    image_id: str
    image_path: Path
    source: Path
    boxes: np.ndarray
    labels: np.ndarray
    is_difficult: np.ndarray
    size: Optional[Tuple[int, int]] = None
    malformed: Optional[str] = None

    @staticmethod
    def empty_arrays() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.uint8)


@dataclass
class DatasetContents:
    """A whole data set as read from one root, every split included.

    images: image_id -> ImageEntry, in file order; splits: split name -> image ids (VOC: the ImageSets
    file stems; COCO: the instances_<split>.json names; YOLO: data.yaml keys; CSV: the split column or the
    file stems; a set without splits has one split); class_names: BACKGROUND first; unknown: one line per
    object whose class is not in class_names ("file: where: value"); notes: other findings of the reader
    for the checker (orphan annotation files, images without one); extra: what one format
    alone needs.
    """

    format: str
    root: Path
    class_names: Tuple[str, ...]
    images: Dict[str, ImageEntry]
    splits: Dict[str, List[str]]
    unknown: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    extra: Dict[str, object] = field(default_factory=dict)  # format-specific (COCO: the original JSON per split)


@dataclass
class LoadedImage:
    """An image as a dataset loads it, for writing it in another format: path (the image file), boxes
    float32 (n, 4) 0-based pixel corners (clipped, with area), labels int64 (n,), is_difficult uint8 (n,),
    size (width, height)."""

    path: Path
    boxes: np.ndarray
    labels: np.ndarray
    is_difficult: np.ndarray
    size: Tuple[int, int]


def training_split_names(names: Sequence[str]) -> List[str]:
    """The splits training uses: every name containing "train" (train, trainval, train2017), else the only
    split of a set that has one."""
    chosen = [name for name in names if "train" in name.lower()]
    return chosen or (list(names) if len(names) == 1 else [])


def evaluation_split_names(names: Sequence[str]) -> List[str]:
    """The splits evaluation and validation use: names containing "test", else names containing "val"
    (val, validation, val2017; not trainval), else the only split of a set that has one."""
    lowered = [(name, name.lower()) for name in names]
    chosen = [name for name, low in lowered if "test" in low]
    chosen = chosen or [name for name, low in lowered if "val" in low and "train" not in low]
    return chosen or (list(names) if len(names) == 1 else [])


def select_split(contents: DatasetContents, is_test: bool) -> List[str]:
    """Image ids of the training (is_test False) or evaluation split of `contents`, by the rule above, in
    order and without repeats. Raises DatasetError naming the root when that split is missing or empty."""
    names = list(contents.splits)
    chosen = evaluation_split_names(names) if is_test else training_split_names(names)
    ids = list(dict.fromkeys(image_id for name in chosen for image_id in contents.splits[name]))
    if not ids:
        split_files = contents.extra.get("split_files") or {}
        if len(chosen) == 1 and chosen[0] in split_files:
            raise DatasetError(f"{split_files[chosen[0]]}: lists no images, so there is nothing to "
                               f"{'evaluate' if is_test else 'train on'}; add image ids to it")
        purpose = "evaluation (a split named *test*, else *val*)" if is_test else "training (a split named *train*)"
        found = ", ".join(f"{name} ({len(contents.splits[name])} images)" for name in names) or "none"
        raise DatasetError(f"{contents.format} data set {contents.root}: no images for {purpose}; "
                           f"splits found: {found}")
    return ids


def trained_split_names(dataset) -> Tuple[List[str], bool]:
    """``(split names, trained on)``: the splits a data set's samples come from (its ``split_names``, as
    VOCDataset, the split datasets and OpenImagesDataset record them), and whether training on the same root
    reads one of them too, as when a VOC root without test.txt is evaluated on trainval."""
    names = list(getattr(dataset, "split_names", None) or [])
    training = set(training_split_names(list(getattr(dataset, "all_split_names", None) or names)))
    return names, bool(training & set(names))


def find_image(stem_path: Path) -> Path:
    """The image file `stem_path` + one of IMAGE_SUFFIXES (either case) that exists, else stem_path.jpg."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (stem_path.with_name(stem_path.name + suffix),
                          stem_path.with_name(stem_path.name + suffix.upper())):
            if candidate.is_file():
                return candidate
    return stem_path.with_name(stem_path.name + ".jpg")


def unknown_class_error(what: str, unknown: Sequence[str], class_source: str,
                        class_names: Sequence[str]) -> DatasetError:
    shown = "; ".join(unknown[:MAX_ERRORS_SHOWN])
    more = f" (and {len(unknown) - MAX_ERRORS_SHOWN} more)" if len(unknown) > MAX_ERRORS_SHOWN else ""
    return DatasetError(f"{what}: {len(unknown)} object(s) have a class not in {class_source} "
                        f"{list(class_names)}: {shown}{more}")


def format_box(box: np.ndarray) -> str:
    """``[x1, y1, x2, y2]`` as a file writes the numbers (``2`` not ``2.0``, ``2.25``, ``nan``)."""
    return "[" + ", ".join(f"{float(value):.7g}" for value in np.asarray(box, np.float64).reshape(4)) + "]"


def describe_box(box: np.ndarray) -> str:
    """:func:`format_box`, then why the box has no area: ``(NaN)``, ``(zero or negative area)``, or
    ``(outside the image)`` when neither."""
    values = [float(value) for value in np.asarray(box, np.float64).reshape(4)]
    text = format_box(box)
    if any(np.isnan(values)):
        return f"{text} (NaN)"
    if values[2] <= values[0] or values[3] <= values[1]:
        return f"{text} (zero or negative area)"
    return f"{text} (outside the image)"


def cleaned_boxes(entry: ImageEntry, class_names: Sequence[str], display_offset: float = 0.0):
    """(boxes, labels, is_difficult) of an entry as a dataset loads them: boxes clipped to entry.size when
    known, boxes without area then dropped with a BadDataWarning naming entry.source (boxes shown with
    `display_offset` added, 1 for VOC's 1-based XML)."""
    written = np.array(entry.boxes, dtype=np.float32).reshape(-1, 4)
    boxes = written.copy()
    labels = np.asarray(entry.labels, np.int64).reshape(-1)
    if entry.size is not None:
        clip_boxes(boxes, *entry.size)
    keep = valid_box_mask(boxes)
    if not keep.all():
        def name(label):
            return class_names[label] if 0 <= label < len(class_names) else str(label)
        dropped = ", ".join(f"{name(labels[i])} {describe_box(written[i] + display_offset)}"
                            for i in np.flatnonzero(~keep))
        warn_bad_data(f"{entry.source}: dropped {int((~keep).sum())} box(es) with a NaN coordinate or no area "
                      f"after clipping to the image (xmin, ymin, xmax, ymax as written): {dropped}")
    return boxes[keep], labels[keep], np.asarray(entry.is_difficult, np.uint8).reshape(-1)[keep]


@dataclass
class _Annotation:
    boxes: np.ndarray
    labels: np.ndarray
    is_difficult: np.ndarray


class AnnotatedImageDataset:
    """Samples of one split of a data set, the same for every format.

    Attributes: ids (list of str), class_names (tuple, BACKGROUND first), class_dict (name -> index),
    root, transform, target_transform, keep_difficult.

    dataset[i] -> (image, boxes, labels), or None for a bad sample (unreadable or corrupt image, malformed
    or missing annotation): a BadDataWarning names the file and the collate functions in
    vision.datasets.collation drop and count it. Without transforms: image RGB uint8 (H, W, 3); boxes
    float32 (n, 4) 0-based pixel corners, clipped to the image (boxes left without area are dropped with
    a warning naming the annotation file); labels int64 (n,); difficult (VOC) / crowd (COCO) objects left
    out unless keep_difficult. n may be 0. Then transform(image, boxes, labels) and
    target_transform(boxes, labels) when given.

    Subclasses call ``_load(entries)`` with the split's ImageEntry list; unknown classes must have been
    raised before (see unknown_class_error).
    """

    # VOC shows dropped boxes as written in its XML (1-based); the other formats are 0-based.
    _display_offset = 0.0

    def _load(self, entries: Sequence[ImageEntry], transform=None, target_transform=None,
              keep_difficult: bool = False) -> None:
        if not entries:
            # One check for every format: an empty list would otherwise surface as PyTorch's num_samples=0
            # (training) or an evaluation of nothing (mAP nan), neither naming the file.
            where = getattr(self, "image_list", None) or f"the data set {getattr(self, 'root', '')}"
            purpose = "evaluate" if getattr(self, "is_test", False) else "train on"
            raise DatasetError(f"{where}: lists no images, so there is nothing to {purpose}; add image ids to it")
        self.transform = transform
        self.target_transform = target_transform
        self.keep_difficult = keep_difficult
        self.ids = [entry.image_id for entry in entries]
        self._entries = {entry.image_id: entry for entry in entries}
        self._annotations: Dict[str, Optional[_Annotation]] = {}
        for entry in entries:
            self._annotations[entry.image_id] = self._clean(entry)

    def _clean(self, entry: ImageEntry) -> Optional[_Annotation]:
        if entry.malformed is not None:
            warn_bad_data(f"skipping image {entry.image_id}: annotation {entry.source} is malformed or missing "
                          f"({entry.malformed})")
            return None
        boxes, labels, difficult = cleaned_boxes(entry, self.class_names, self._display_offset)
        return _Annotation(boxes, labels, difficult)

    def __len__(self) -> int:
        return len(self.ids)

    def balance(self) -> None:
        """``--balance_data``: down-sample the frequent classes. Every class keeps at most as many of its
        images as the rarest class has (drawn with np.random, the rule of OpenImagesDataset); an image stays
        when any of its classes keeps it. Images without boxes, and those skipped as malformed, stay."""
        images_of_class: Dict[int, List[int]] = {}
        with_boxes = set()
        for index, image_id in enumerate(self.ids):
            annotation = self._annotations[image_id]
            if annotation is None:
                continue
            keep = slice(None) if self.keep_difficult else annotation.is_difficult == 0
            for label in sorted(set(annotation.labels[keep].tolist())):
                images_of_class.setdefault(label, []).append(index)
                with_boxes.add(index)
        if not images_of_class:
            return
        fewest = min(len(indexes) for indexes in images_of_class.values())
        chosen = set()
        for label in sorted(images_of_class):
            chosen.update(np.random.permutation(images_of_class[label])[:fewest].tolist())
        self.ids = [image_id for index, image_id in enumerate(self.ids) if index in chosen or index not in with_boxes]

    def _skip_malformed(self, image_id: str) -> None:
        warn_bad_data(f"skipping image {image_id}: annotation {self._entries[image_id].source} is malformed")

    def __getitem__(self, index):
        image_id = self.ids[index]
        annotation = self._annotations[image_id]
        if annotation is None:
            self._skip_malformed(image_id)
            return None
        image = read_or_skip(self._read_image, image_id)
        if image is None:
            return None
        keep = slice(None) if self.keep_difficult else annotation.is_difficult == 0
        boxes, labels = annotation.boxes[keep].copy(), annotation.labels[keep].copy()
        height, width = image.shape[:2]
        clip_boxes(boxes, width, height)
        valid = valid_box_mask(boxes)
        if not valid.all():
            warn_bad_data(f"{self._entries[image_id].source}: dropped {int((~valid).sum())} box(es) that lie "
                          f"outside the {width}x{height} image")
            boxes, labels = boxes[valid], labels[valid]
        return apply_transforms(self.transform, self.target_transform, image, boxes, labels)

    def get_image(self, index):
        """The image of sample `index` after `transform` (called with the image alone), or None with a
        BadDataWarning for a bad sample."""
        image_id = self.ids[index]
        if self._annotations[image_id] is None:
            self._skip_malformed(image_id)
            return None
        return transform_image(self.transform, read_or_skip(self._read_image, image_id))

    def get_annotation(self, index):
        """(image_id, (boxes float32 (n, 4) 0-based pixel corners, labels int64 (n,), is_difficult uint8
        (n,))) with every object, difficult ones included; no image is read. For a malformed annotation
        the arrays are empty (get_image and __getitem__ give None for it, so evaluation skips it)."""
        image_id = self.ids[index]
        annotation = self._annotations[image_id]
        if annotation is None:
            return image_id, ImageEntry.empty_arrays()
        return image_id, (annotation.boxes.copy(), annotation.labels.copy(), annotation.is_difficult.copy())

    def annotated_size(self, index) -> Optional[Tuple[int, int]]:
        """``(width, height)`` of sample ``index``'s image as its annotation (or the header read with it)
        gives it; None when unknown."""
        return self._entries[self.ids[index]].size

    def is_bad_annotation(self, index) -> bool:
        """True when sample `index` had a malformed or missing annotation (it is skipped)."""
        return self._annotations[self.ids[index]] is None

    def image_path(self, image_id: str) -> Path:
        return self._entries[image_id].image_path

    def _read_image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3); raises BadImageError naming the file if it is missing or corrupt."""
        return read_rgb_image(self.image_path(image_id))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(getattr(self, 'root', ''))!r}, images={len(self.ids)}, "
                f"classes={len(self.class_names) - 1})")


class SplitDataset(AnnotatedImageDataset):
    """One split of a DatasetContents, chosen by the split rule (select_split). Raises DatasetError for
    unknown classes (naming file and line) or a missing or empty split."""

    def _init_from(self, contents: DatasetContents, class_source: str, transform, target_transform,
                   is_test: bool, keep_difficult: bool) -> None:
        self.root = contents.root
        self.is_test = is_test
        self.contents = contents
        self.class_names = tuple(contents.class_names)
        self.class_dict = {name: index for index, name in enumerate(self.class_names)}
        if contents.unknown:
            raise unknown_class_error(f"{contents.format} data set {contents.root}", contents.unknown, class_source,
                                      self.class_names)
        ids = select_split(contents, is_test)
        self.all_split_names = list(contents.splits)
        self.split_names = (evaluation_split_names if is_test else training_split_names)(self.all_split_names)
        self._load([contents.images[image_id] for image_id in ids], transform, target_transform, keep_difficult)

"""PASCAL VOC format data sets (VOC2007/2012, CVAT's VOC export, the synthetic shapes).

Layout of a root:
    Annotations/<id>.xml           one per image; tags found by name (VOC files come in several layouts)
    ImageSets/Main/trainval.txt    ids for training (default.txt, as CVAT exports, when missing)
    ImageSets/Main/test.txt        ids for evaluation (default.txt when missing)
    JPEGImages/<id>.jpg            (.jpeg/.png also found)
    labels.txt                     optional class names, comma-separated or one a line; else the 20 VOC ones
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from xml.etree import ElementTree

import numpy as np

from .errors import BadDataWarning, BadImageError, DatasetError, warn_bad_data  # noqa: F401 (re-export)
from .images import apply_transforms, read_or_skip, read_rgb_image, transform_image
from .labels import VOC_CLASS_NAMES, read_class_names
from ..transforms.box_ops import clip_boxes, valid_box_mask

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp")
_MAX_ERRORS_SHOWN = 10


@dataclass
class VOCAnnotation:
    """All objects of one image. boxes float32 (n, 4) 0-based pixel corners [x1, y1, x2, y2];
    labels int64 (n,); is_difficult uint8 (n,)."""
    boxes: np.ndarray
    labels: np.ndarray
    is_difficult: np.ndarray


class MalformedAnnotation(ValueError):
    """An annotation file that cannot be used; the message says why."""


def _text(element, tag: str) -> Optional[str]:
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def parse_voc_xml(path) -> Tuple[List[str], np.ndarray, np.ndarray, Optional[Tuple[int, int]]]:
    """Read one VOC XML file.

    Returns (class names as written, boxes float32 (n, 4) 0-based pixel corners = XML value - 1 as in the
    original toolkit, is_difficult uint8 (n,), (width, height) from <size> or None if absent or zero).
    Boxes are returned as written (not clipped, possibly inverted). Raises MalformedAnnotation when the
    file does not parse, or an <object> lacks a name, a <bndbox> or a numeric coordinate.
    """
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise MalformedAnnotation(f"cannot parse: {error}") from error
    names, boxes, difficult = [], [], []
    for number, obj in enumerate(root.findall("object")):
        name = _text(obj, "name")
        box = obj.find("bndbox")
        if not name:
            raise MalformedAnnotation(f"object {number} has no <name>")
        if box is None:
            raise MalformedAnnotation(f"object {number} ({name}) has no <bndbox>")
        try:
            boxes.append([float(_text(box, tag)) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")])
        except (TypeError, ValueError) as error:
            raise MalformedAnnotation(f"object {number} ({name}) has a missing or non-numeric coordinate") \
                from error
        flag = (_text(obj, "difficult") or "0").lower()
        difficult.append(1 if flag in ("1", "true", "yes") else 0)
        names.append(name)
    size = None
    size_element = root.find("size")
    if size_element is not None:
        try:
            width, height = int(float(_text(size_element, "width"))), int(float(_text(size_element, "height")))
            if width > 0 and height > 0:
                size = (width, height)
        except (TypeError, ValueError):
            size = None
    boxes_array = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return names, boxes_array, np.array(difficult, dtype=np.uint8), size


class VOCDataset:
    """A VOC-format root, with every annotation parsed and checked at construction and kept in memory.

    VOCDataset(root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
               label_file=None)
      is_test: read ImageSets/Main/test.txt, else trainval.txt (either falls back to default.txt).
      keep_difficult: keep objects flagged <difficult>1 in __getitem__ (they are always in get_annotation).
      label_file: class names file; default <root>/labels.txt if present, else the 20 VOC classes.

    Attributes: ids (list of str), class_names (tuple, BACKGROUND first), class_dict (name -> index).
    XML class names are matched case-insensitively. An unknown class name raises DatasetError naming the
    file(s) and class(es) here, before training starts.

    dataset[i] -> (image, boxes, labels), or None for a bad sample (unreadable or corrupt image, malformed
    or missing XML): a BadDataWarning names the file and the collate functions in
    vision.datasets.collation drop and count it. Without transforms: image RGB uint8 (H, W, 3); boxes
    float32 (n, 4) 0-based pixel corners, clipped to the image (boxes left without area are dropped with
    a warning); labels int64 (n,). n may be 0. Then transform(image, boxes, labels) and
    target_transform(boxes, labels) when given.
    """

    def __init__(self, root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
                 label_file=None):
        self.root = Path(root)
        self.transform = transform
        self.target_transform = target_transform
        self.is_test = is_test
        self.keep_difficult = keep_difficult
        self.ids = self._read_ids()
        if label_file is None and (self.root / "labels.txt").is_file():
            label_file = self.root / "labels.txt"
        self.label_file = Path(label_file) if label_file is not None else None
        self.class_names = tuple(read_class_names(label_file)) if label_file is not None else VOC_CLASS_NAMES
        self.class_dict = {name: index for index, name in enumerate(self.class_names)}
        self._annotations: Dict[str, Optional[VOCAnnotation]] = self._read_annotations()

    def _read_ids(self) -> List[str]:
        split_dir = self.root / "ImageSets" / "Main"
        candidates = [split_dir / ("test.txt" if self.is_test else "trainval.txt"), split_dir / "default.txt"]
        for path in candidates:
            if path.is_file():
                lines = path.read_text(encoding="utf-8").splitlines()
                return [line.split()[0] for line in lines if line.strip()]
        raise DatasetError(f"VOC root {self.root}: no image list; looked for "
                           + " and ".join(str(path) for path in candidates))

    def _annotation_path(self, image_id: str) -> Path:
        return self.root / "Annotations" / f"{image_id}.xml"

    def _read_annotations(self) -> Dict[str, Optional[VOCAnnotation]]:
        lookup = {name.lower(): index for index, name in enumerate(self.class_names)}
        annotations: Dict[str, Optional[VOCAnnotation]] = {}
        unknown = []  # (xml path, class name)
        for image_id in self.ids:
            path = self._annotation_path(image_id)
            try:
                names, boxes, difficult, size = parse_voc_xml(path)
            except MalformedAnnotation as error:
                warn_bad_data(f"skipping image {image_id}: annotation {path} is malformed or missing ({error})")
                annotations[image_id] = None
                continue
            labels = np.array([lookup.get(name.lower(), -1) for name in names], dtype=np.int64)
            unknown.extend((path, names[i]) for i in np.flatnonzero(labels < 0))
            if size is not None:
                clip_boxes(boxes, *size)
            keep = valid_box_mask(boxes)
            if not keep.all():
                dropped = ", ".join(f"{names[i]} {np.round(boxes[i] + 1, 1).tolist()}" for i in np.flatnonzero(~keep))
                warn_bad_data(f"{path}: dropped {int((~keep).sum())} box(es) with no area after clipping to the "
                              f"image (xmin, ymin, xmax, ymax): {dropped}")
            annotations[image_id] = VOCAnnotation(boxes[keep], labels[keep], difficult[keep])
        if unknown:
            source = self.label_file or "the 20 VOC classes (no labels.txt)"
            shown = "; ".join(f"{path}: {name!r}" for path, name in unknown[:_MAX_ERRORS_SHOWN])
            more = f" (and {len(unknown) - _MAX_ERRORS_SHOWN} more)" if len(unknown) > _MAX_ERRORS_SHOWN else ""
            raise DatasetError(f"VOC root {self.root}: {len(unknown)} object(s) have a class name not in "
                               f"{source} {list(self.class_names)}: {shown}{more}")
        return annotations

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        image_id = self.ids[index]
        annotation = self._annotations[image_id]
        if annotation is None:
            warn_bad_data(f"skipping image {image_id}: annotation {self._annotation_path(image_id)} is malformed")
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
            warn_bad_data(f"{self._annotation_path(image_id)}: dropped {int((~valid).sum())} box(es) that lie "
                          f"outside the {width}x{height} image")
            boxes, labels = boxes[valid], labels[valid]
        return apply_transforms(self.transform, self.target_transform, image, boxes, labels)

    def get_image(self, index):
        """The image of sample `index` after `transform` (called with the image alone), or None with a
        BadDataWarning for a bad sample."""
        image_id = self.ids[index]
        if self._annotations[image_id] is None:
            warn_bad_data(f"skipping image {image_id}: annotation {self._annotation_path(image_id)} is malformed")
            return None
        return transform_image(self.transform, read_or_skip(self._read_image, image_id))

    def get_annotation(self, index):
        """(image_id, (boxes float32 (n, 4) 0-based pixel corners, labels int64 (n,), is_difficult uint8
        (n,))) with every object, difficult ones included; no image is read. For a malformed XML the
        arrays are empty (get_image and __getitem__ give None for it, so evaluation skips it)."""
        image_id = self.ids[index]
        annotation = self._annotations[image_id]
        if annotation is None:
            return image_id, (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.uint8))
        return image_id, (annotation.boxes.copy(), annotation.labels.copy(), annotation.is_difficult.copy())

    def is_bad_annotation(self, index) -> bool:
        """True when sample `index` had a malformed or missing XML (it is skipped)."""
        return self._annotations[self.ids[index]] is None

    def image_path(self, image_id: str) -> Path:
        path = self.root / "JPEGImages" / f"{image_id}.jpg"
        if path.is_file():
            return path
        for suffix in _IMAGE_SUFFIXES:
            candidate = path.with_suffix(suffix)
            if candidate.is_file():
                return candidate
        return path

    def _read_image(self, image_id: str) -> np.ndarray:
        """RGB uint8 (H, W, 3); raises BadImageError naming the file if it is missing or corrupt."""
        return read_rgb_image(self.image_path(image_id))

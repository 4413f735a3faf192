"""PASCAL VOC format data sets (VOC2007/2012, CVAT's VOC export, the synthetic shapes).

Layout of a root:
    Annotations/<id>.xml           one per image; tags found by name (VOC files come in several layouts)
    ImageSets/Main/trainval.txt    ids for training (default.txt, as CVAT exports, when missing)
    ImageSets/Main/test.txt        ids for evaluation (default.txt when missing)
    JPEGImages/<id>.jpg            (.jpeg/.png also found)
    labels.txt                     optional class names, comma-separated or one a line; else the 20 VOC ones
"""
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from xml.etree import ElementTree

import numpy as np

from ..utils.atomic import write_bytes, write_text
from ..utils.labels import read_label_file
from .annotated import (
    IMAGE_SUFFIXES,
    AnnotatedImageDataset,
    DatasetContents,
    ImageEntry,
    LoadedImage,
    evaluation_split_names,
    find_image,
    training_split_names,
    unknown_class_error,
)
from .errors import BadDataWarning, BadImageError, DatasetError, warn_bad_data  # noqa: F401 (re-export)
from .labels import VOC_CLASS_NAMES

_CLASS_LIST = re.compile(r".+_(train|val|trainval|test)$")


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


def voc_split_files(root) -> Dict[str, Path]:
    """ImageSets/Main/<split>.txt files of a VOC root by split name, leaving out the per-class lists
    (<class>_<split>.txt)."""
    folder = Path(root) / "ImageSets" / "Main"
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.glob("*.txt")) if not _CLASS_LIST.match(path.stem)}


def read_id_list(path: Path) -> List[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip()]


def read_voc_entry(root: Path, image_id: str, lookup: Dict[str, int], unknown: List[str]) -> ImageEntry:
    """The ImageEntry of one id from Annotations/<id>.xml (1-based XML made 0-based); class names are
    looked up case-insensitively in `lookup`, unknown ones appended to `unknown` as "path: 'name'"."""
    path = root / "Annotations" / f"{image_id}.xml"
    image_path = find_image(root / "JPEGImages" / image_id)
    try:
        names, boxes, difficult, size = parse_voc_xml(path)
    except MalformedAnnotation as error:
        return ImageEntry(image_id, image_path, path, *ImageEntry.empty_arrays(), malformed=str(error))
    labels = np.array([lookup.get(name.lower(), -1) for name in names], dtype=np.int64)
    unknown.extend(f"{path}: {names[i]!r}" for i in np.flatnonzero(labels < 0))
    return ImageEntry(image_id, image_path, path, boxes, labels, difficult, size)


def voc_class_names(root: Path, label_file=None) -> Tuple[Optional[Path], Tuple[str, ...]]:
    """(the label file used or None, class names): label_file, else <root>/labels.txt, else the 20 VOC classes."""
    if label_file is None and (root / "labels.txt").is_file():
        label_file = root / "labels.txt"
    if label_file is None:
        return None, VOC_CLASS_NAMES
    return Path(label_file), tuple(read_label_file(label_file))


def read_voc(root, label_file=None) -> DatasetContents:
    """Every split of a VOC root (each ImageSets/Main/<split>.txt) with the annotations of all their ids.
    Notes list XML files without an image and images without an XML."""
    root = Path(root)
    splits = {name: read_id_list(path) for name, path in voc_split_files(root).items()}
    if not splits:
        raise DatasetError(f"VOC root {root}: no image list in {root / 'ImageSets' / 'Main'}")
    _, class_names = voc_class_names(root, label_file)
    lookup = {name.lower(): index for index, name in enumerate(class_names)}
    unknown: List[str] = []
    ids = list(dict.fromkeys(image_id for split_ids in splits.values() for image_id in split_ids))
    images = {image_id: read_voc_entry(root, image_id, lookup, unknown) for image_id in ids}
    notes = []
    xml_stems = {path.stem for path in (root / "Annotations").glob("*.xml")}
    image_stems = {path.stem for path in (root / "JPEGImages").glob("*") if path.suffix.lower() in IMAGE_SUFFIXES}
    notes += [f"{root / 'Annotations' / stem}.xml: annotation without an image"
              for stem in sorted(xml_stems - image_stems)]
    notes += [f"{root / 'JPEGImages' / stem}: image without an annotation file"
              for stem in sorted(image_stems - xml_stems)]
    return DatasetContents("voc", root, class_names, images, splits, unknown, notes)


class VOCDataset(AnnotatedImageDataset):
    """A VOC-format root, with every annotation parsed and checked at construction and kept in memory.

    VOCDataset(root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
               label_file=None)
      is_test: read ImageSets/Main/test.txt, else trainval.txt (either falls back to default.txt, then to
        the splits that vision.datasets.annotated's rule picks, e.g. train2017.txt after a conversion).
      keep_difficult: keep objects flagged <difficult>1 in __getitem__ (they are always in get_annotation).
      label_file: class names file; default <root>/labels.txt if present, else the 20 VOC classes.

    Attributes: ids (list of str), class_names (tuple, BACKGROUND first), class_dict (name -> index).
    XML class names are matched case-insensitively. An unknown class name raises DatasetError naming the
    file(s) and class(es) here, before training starts.

    Samples as vision.datasets.annotated.AnnotatedImageDataset: dataset[i] -> (image RGB uint8, boxes
    float32 (n, 4) 0-based pixel corners clipped to the image, labels int64), or None for a bad sample
    (unreadable image, malformed or missing XML) after a BadDataWarning naming the file.
    """

    _display_offset = 1.0

    def __init__(self, root, transform=None, target_transform=None, is_test=False, keep_difficult=False,
                 label_file=None):
        self.root = Path(root)
        self.is_test = is_test
        ids = self._read_ids()
        self.label_file, self.class_names = voc_class_names(self.root, label_file)
        self.class_dict = {name: index for index, name in enumerate(self.class_names)}
        lookup = {name.lower(): index for index, name in enumerate(self.class_names)}
        unknown: List[str] = []
        entries = [read_voc_entry(self.root, image_id, lookup, unknown) for image_id in ids]
        if unknown:
            source = self.label_file or "the 20 VOC classes (no labels.txt)"
            raise unknown_class_error(f"VOC root {self.root}", unknown, str(source), self.class_names)
        self._load(entries, transform, target_transform, keep_difficult)

    def _read_ids(self) -> List[str]:
        split_dir = self.root / "ImageSets" / "Main"
        candidates = [split_dir / ("test.txt" if self.is_test else "trainval.txt"), split_dir / "default.txt"]
        files = voc_split_files(self.root)
        self.all_split_names = list(files)  # with split_names: which split evaluation reads, and is it trained on
        for path in candidates:
            if path.is_file():
                self.image_list = path  # named by the empty-list check of AnnotatedImageDataset._load
                self.split_names = [path.stem]
                return read_id_list(path)
        chosen = (evaluation_split_names if self.is_test else training_split_names)(list(files))
        if chosen:
            self.split_names = list(chosen)
            return list(dict.fromkeys(image_id for name in chosen for image_id in read_id_list(files[name])))
        raise DatasetError(f"VOC root {self.root}: no image list; looked for "
                           + " and ".join(str(path) for path in candidates))

    def _annotation_path(self, image_id: str) -> Path:
        return self.root / "Annotations" / f"{image_id}.xml"


def _coordinate_text(value: float) -> str:
    """A 0-based float32 coordinate as VOC's 1-based text; exact (whole numbers without a decimal point)."""
    value = float(value) + 1
    return str(int(value)) if value.is_integer() else repr(value)


def write_voc(contents: DatasetContents, destination: Path, loaded: Dict[str, LoadedImage], place) -> None:
    """Write JPEGImages/<id><suffix> (through ``place``), Annotations/<id>.xml (1-based, exact: the loader
    gives back the same float32 boxes), ImageSets/Main/<split>.txt for every split and labels.txt."""
    from .labels import store_labels

    for image_id, image in loaded.items():
        place(image.path, destination / "JPEGImages" / (image_id + image.path.suffix))
        annotation = ElementTree.Element("annotation")
        ElementTree.SubElement(annotation, "filename").text = image_id + image.path.suffix
        size = ElementTree.SubElement(annotation, "size")
        for tag, value in (("width", image.size[0]), ("height", image.size[1]), ("depth", 3)):
            ElementTree.SubElement(size, tag).text = str(value)
        for box, label, flag in zip(image.boxes.tolist(), image.labels.tolist(), image.is_difficult.tolist()):
            element = ElementTree.SubElement(annotation, "object")
            ElementTree.SubElement(element, "name").text = contents.class_names[label]
            ElementTree.SubElement(element, "difficult").text = str(int(flag))
            bndbox = ElementTree.SubElement(element, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ElementTree.SubElement(bndbox, tag).text = _coordinate_text(value)
        ElementTree.indent(annotation, space="\t")
        path = destination / "Annotations" / f"{image_id}.xml"
        write_bytes(path, ElementTree.tostring(annotation, encoding="utf-8") + b"\n", fsync=False)
    split_folder = destination / "ImageSets" / "Main"
    for split, ids in contents.splits.items():
        write_text(split_folder / f"{split}.txt", "".join(f"{i}\n" for i in ids if i in loaded))
    store_labels(destination / "labels.txt", contents.class_names)

"""Class-name lists: reading labels.txt (both formats) and writing model label files."""
from pathlib import Path
from typing import Iterable, List, Sequence

from vision.utils.labels import BACKGROUND, LabelFileError, parse_label_text, write_label_file

from .errors import DatasetError

VOC_CLASS_NAMES = (
    BACKGROUND, "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def parse_class_names(text: str, source: str = "labels") -> List[str]:
    """Class names from a labels text, BACKGROUND first (see ``vision.utils.labels.parse_label_text``:
    comma-separated or one a line, BACKGROUND added as class 0 unless already first). Raises DatasetError
    naming `source` for no names, a duplicate name (case-insensitive), or BACKGROUND anywhere but first."""
    try:
        return parse_label_text(text, source=source)
    except LabelFileError as error:
        raise DatasetError(str(error)) from None


def read_class_names(path) -> List[str]:
    """parse_class_names of the file at `path` (UTF-8)."""
    return parse_class_names(Path(path).read_text(encoding="utf-8"), source=str(path))


def store_labels(path, class_names: Iterable[str]) -> None:
    """Write class names one a line (BACKGROUND included when given), as the original toolkit's model
    label files are; atomically, so a reader never sees half a file."""
    write_label_file(path, list(class_names))


def same_class_names(first: Sequence[str], second: Sequence[str]) -> bool:
    """True when two class lists agree, name by name, ignoring case."""
    return [name.lower() for name in first] == [name.lower() for name in second]

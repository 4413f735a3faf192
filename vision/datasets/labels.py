"""Class-name lists: reading labels.txt (both formats) and writing model label files."""
import os
from pathlib import Path
from typing import Iterable, List, Sequence

from .errors import DatasetError

BACKGROUND = "BACKGROUND"

VOC_CLASS_NAMES = (
    BACKGROUND, "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def parse_class_names(text: str, source: str = "labels") -> List[str]:
    """Class names from a labels text, BACKGROUND first.

    Names are separated by commas (the original toolkit's format, possibly over several lines) or one a
    line; spaces around a name are removed and empty entries ignored. BACKGROUND is added as class 0
    unless the first name already is BACKGROUND (any case). Raises DatasetError naming `source` for a
    duplicate name (case-insensitive), or BACKGROUND anywhere but first.
    """
    names = [name.strip() for line in text.splitlines() for name in line.split(",")]
    names = [name for name in names if name]
    if not names or names[0].upper() != BACKGROUND:
        names.insert(0, BACKGROUND)
    seen = {}
    for index, name in enumerate(names):
        key = name.lower()
        if index and key == BACKGROUND.lower():
            raise DatasetError(f"{source}: {name!r} is class {index}; background must be class 0 or absent")
        if key in seen:
            raise DatasetError(f"{source}: class {name!r} appears twice (as {seen[key]!r} too); "
                               "names are compared case-insensitively")
        seen[key] = name
    return names


def read_class_names(path) -> List[str]:
    """parse_class_names of the file at `path` (UTF-8)."""
    return parse_class_names(Path(path).read_text(encoding="utf-8"), source=str(path))


def store_labels(path, class_names: Iterable[str]) -> None:
    """Write class names one a line (BACKGROUND included when given), as the original toolkit's model
    label files are; written to a temporary file, then renamed, so a reader never sees half a file."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
    os.replace(temporary, path)


def same_class_names(first: Sequence[str], second: Sequence[str]) -> bool:
    """True when two class lists agree, name by name, ignoring case."""
    return [name.lower() for name in first] == [name.lower() for name in second]

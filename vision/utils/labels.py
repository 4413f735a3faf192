"""Reading a model's label file (class names) for the run and export scripts. No torch import.

Two forms are accepted, as the original toolkit wrote and read them: one name a line (the model label
files ``train_ssd.py`` writes, BACKGROUND first), or names separated by commas (a VOC ``labels.txt``,
without BACKGROUND). BACKGROUND is put first when the file does not start with it, so the class count
is always ``len(names)`` and class index ``i`` is ``names[i]``.
"""
from __future__ import annotations

import os
from typing import List

BACKGROUND = "BACKGROUND"


class LabelFileError(ValueError):
    """A label file that is missing, unreadable or holds no usable names; the message names the file."""


def parse_label_text(text: str, source: str = "labels") -> List[str]:
    """Class names in ``text`` (either form), BACKGROUND first; empty entries and spaces around names are
    dropped. Raises LabelFileError naming ``source`` when no name is left, when BACKGROUND appears other
    than first, or when a name appears twice."""
    names = [name.strip() for line in text.splitlines() for name in line.split(",")]
    names = [name for name in names if name]
    if not names or (len(names) == 1 and names[0].upper() == BACKGROUND):
        raise LabelFileError(f"{source}: the label file holds no class names")
    if names[0].upper() != BACKGROUND:
        names.insert(0, BACKGROUND)
    seen = set()
    for index, name in enumerate(names):
        key = name.lower()
        if index and key == BACKGROUND.lower():
            raise LabelFileError(f"{source}: {name!r} is line/entry {index}; BACKGROUND may only come first")
        if key in seen:
            raise LabelFileError(f"{source}: class {name!r} appears twice")
        seen.add(key)
    return names


def read_label_file(path: str | os.PathLike) -> List[str]:
    """Class names of the label file at ``path`` (UTF-8), BACKGROUND first; see :func:`parse_label_text`.
    Raises LabelFileError naming the file when it is missing, a folder, not text, or empty."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise LabelFileError(f"{path}: no such label file")
    if os.path.isdir(path):
        raise LabelFileError(f"{path}: is a folder, not a label file")
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except UnicodeDecodeError:
        raise LabelFileError(f"{path}: not a text file (expected class names, one a line)") from None
    return parse_label_text(text, source=path)


def write_label_file(path: str | os.PathLike, class_names: List[str]) -> None:
    """Write ``class_names`` one a line (the form the original's scripts read back), atomically."""
    path = os.fspath(path)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write("".join(f"{name}\n" for name in class_names))
    os.replace(temporary, path)

"""The one reader (and writer) of label files: a model's class names, or a data set's ``labels.txt``.
Used by the scripts, the data sets, evaluation and export. No torch import.

Two forms are accepted, as the original toolkit wrote and read them: one name a line (the model label
files ``train_ssd.py`` writes, BACKGROUND first), or names separated by commas (a VOC ``labels.txt``,
without BACKGROUND). BACKGROUND is put first when the file does not start with it (a file that already
starts with it gets no second one), so the class count is always ``len(names)`` and class index ``i``
is ``names[i]``. Names are kept as written, spaces inside included (``traffic light``, ``N/A-12``).
"""
from __future__ import annotations

import os
from typing import Iterable, List

from vision.utils.atomic import write_text

BACKGROUND = "BACKGROUND"


class LabelFileError(ValueError):
    """A label file that is missing, unreadable or holds no usable names; the message names the file."""


def parse_label_text(text: str, source: str = "labels") -> List[str]:
    """Class names in ``text`` (either form), BACKGROUND first; empty entries and spaces around names are
    dropped. Raises LabelFileError naming ``source`` (and the line) when no name is left, when BACKGROUND
    appears other than first, or when a name appears twice (names compare case-insensitively)."""
    entries = [(line_number, name.strip()) for line_number, line in enumerate(text.splitlines(), start=1)
               for name in line.split(",")]
    entries = [(line_number, name) for line_number, name in entries if name]
    if not entries or (len(entries) == 1 and entries[0][1].upper() == BACKGROUND):
        raise LabelFileError(f"{source}: the label file holds no class names")
    if entries[0][1].upper() != BACKGROUND:
        entries.insert(0, (0, BACKGROUND))
    first_line = {}
    for index, (line_number, name) in enumerate(entries):
        key = name.lower()
        if index and key == BACKGROUND.lower():
            raise LabelFileError(f"{source}: line {line_number}: {name!r}; BACKGROUND may only come first")
        if key in first_line:
            raise LabelFileError(f"{source}: line {line_number}: class {name!r} appears twice "
                                 f"(first on line {first_line[key]})")
        first_line[key] = line_number
    return [name for _, name in entries]


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


def write_label_file(path: str | os.PathLike, class_names: Iterable[str]) -> None:
    """Write ``class_names`` one a line (BACKGROUND included when given; the form the original's scripts
    read back), atomically, so a reader never sees half a file. Raises WriteError (an OSError) naming the
    file when it cannot be written."""
    write_text(path, "".join(f"{name}\n" for name in class_names))


store_labels = write_label_file  # the original toolkit's name (vision.utils.misc.store_labels)

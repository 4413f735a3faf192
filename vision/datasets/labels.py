"""Class-name lists of the data sets. Label files are read and written by vision.utils.labels
(``read_label_file``, ``store_labels``); BACKGROUND and store_labels are re-exported here."""
from typing import Sequence

from vision.utils.labels import BACKGROUND, store_labels  # noqa: F401  (re-exported)

VOC_CLASS_NAMES = (
    BACKGROUND, "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def same_class_names(first: Sequence[str], second: Sequence[str]) -> bool:
    """True when two class lists agree, name by name, ignoring case."""
    return [name.lower() for name in first] == [name.lower() for name in second]

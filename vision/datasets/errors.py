"""How the datasets report bad data.

Bad data that a long run should survive (an unreadable image, a malformed annotation file, a box without
area) gives a BadDataWarning naming the file, and the sample is skipped or the box dropped. Problems that
mean the run is set up wrong (an unknown class name, roots whose class lists differ, a missing split
file) raise DatasetError before training starts.
"""
import warnings


class DatasetError(ValueError):
    """The data set cannot be used as given; the message names the file(s) and what is wrong."""


class BadDataWarning(UserWarning):
    """A file was skipped or a box dropped; the message names the file."""


class BadImageError(OSError):
    """An image file is missing, unreadable or corrupt; the message names the file."""


def warn_bad_data(message: str) -> None:
    warnings.warn(message, BadDataWarning, stacklevel=3)

"""What to say when an epoch skipped all or most of its samples: how many, an example file, the likely cause.

An epoch that read no sample trains nothing; the run stops before saving anything (a checkpoint of
untrained weights named like a real one misleads). More than half skipped is warned about loudly.
"""
from __future__ import annotations

import warnings
from typing import Iterable, Optional

from vision.datasets import DatasetError
from vision.datasets.errors import BadDataWarning

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PROBED_SAMPLES = 8


class EmptyEpochError(DatasetError):
    """An epoch in which no sample could be read; the message says how many, an example and the cause."""


def _ids(dataset) -> list:
    ids = list(getattr(dataset, "ids", []) or [])
    return [image_id[-1] if isinstance(image_id, tuple) else image_id for image_id in ids]


def id_with_extension(dataset) -> Optional[str]:
    """The first image id that ends in an image extension (``000001.jpg`` listed where ``000001`` is
    meant), or None."""
    return next((str(image_id) for image_id in _ids(dataset) if str(image_id).lower().endswith(IMAGE_SUFFIXES)), None)


def first_bad_sample(dataset, indexes: Iterable[int]) -> Optional[str]:
    """The warning that the first unreadable sample among ``indexes`` gives (it names the file), or None."""
    for index in indexes:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BadDataWarning)
            sample = dataset[index]
        if sample is None:
            messages = [str(warning.message) for warning in caught if issubclass(warning.category, BadDataWarning)]
            return messages[0] if messages else f"sample {index}"
    return None


def cause(dataset) -> str:
    """The likely cause of many skipped samples, with an example, as one phrase."""
    with_extension = id_with_extension(dataset)
    if with_extension is not None:
        stem = with_extension.rsplit(".", 1)[0]
        return (f"the image list names ids with an extension ({with_extension!r}); list them without it "
                f"({stem!r}): the toolkit adds the extension")
    example = first_bad_sample(dataset, range(min(len(dataset), PROBED_SAMPLES)))
    return f"e.g. {example}" if example else "see the warnings above for the files"


def empty_epoch_error(dataset, epoch: int, skipped: int, roots) -> EmptyEpochError:
    where = ", ".join(str(root) for root in roots) if roots else "the data set"
    return EmptyEpochError(f"{where}: epoch {epoch} read none of its {skipped} samples, so nothing was trained and "
                           f"nothing saved; {cause(dataset)}")


def mostly_skipped_warning(dataset, epoch: int, skipped: int, total: int, roots) -> str:
    where = ", ".join(str(root) for root in roots) if roots else "the data set"
    return (f"{where}: epoch {epoch} skipped {skipped} of {total} samples ({100 * skipped / max(total, 1):.0f}%), "
            f"so it trained on few images; {cause(dataset)}")

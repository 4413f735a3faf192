"""Which Open Images boxes and images to download: class requests, filters and per-class counts.

Everything here is pure pandas on tables already on disk; the network lives in
`open_images_download_http` (annotation CSVs) and `open_images_download_images` (images).

Tables follow the public release's layout. An annotation table has the columns of
`ANNOTATION_COLUMNS` (box corners XMin/XMax/YMin/YMax in 0..1 of the image size, flags 0/1);
a selection adds the original toolkit's two columns `id` (the label's MID, e.g. `/m/0gxl3`) and
`ClassName` (its display name, e.g. `Handgun`).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

SPLITS: tuple[str, ...] = ("train", "validation", "test")
ANNOTATION_COLUMNS: tuple[str, ...] = (
    "ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
    "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside",
)
GROUP_FILTERS: tuple[str, ...] = ("", "group", "~group")

# Ids such as "0000000000000123" must stay strings: read as numbers they lose their leading zeros.
_TEXT_COLUMNS = {"ImageID": str, "Source": str, "LabelName": str}
_CSV_CHUNK_ROWS = 1_000_000


class SelectionError(ValueError):
    """A user mistake in what was asked for (unknown class, malformed class spec); the message is one line."""


@dataclass(frozen=True)
class ClassRequest:
    """One entry of `--class_names`: `Name[:filter[:fraction]]`.

    group_filter: "" keeps every image, "group" keeps only images whose boxes of this class are all
    group boxes, "~group" drops images holding a group box of this class.
    fraction: share of this class's images kept, in (0, 1].
    """

    name: str
    group_filter: str = ""
    fraction: float = 1.0


def parse_class_requests(text: str) -> list[ClassRequest]:
    """Parse the comma-separated `--class_names` value, e.g. `"Handgun::0.5,Shotgun:~group"`.

    Empty entries (a trailing comma) are ignored. Raises SelectionError for an empty list, a
    repeated class, an unknown group filter or a fraction outside (0, 1].
    """
    requests: list[ClassRequest] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        fields = [field.strip() for field in entry.split(":")]
        if len(fields) > 3:
            raise SelectionError(f"class entry {entry!r} has more than the 3 fields Name[:filter[:fraction]]")
        name = fields[0]
        group_filter = fields[1] if len(fields) > 1 else ""
        fraction_text = fields[2] if len(fields) > 2 else ""
        if not name:
            raise SelectionError(f"class entry {entry!r} has no class name")
        if group_filter not in GROUP_FILTERS:
            raise SelectionError(
                f"class entry {entry!r}: group filter must be empty, 'group' or '~group', not {group_filter!r}")
        fraction = 1.0
        if fraction_text:
            try:
                fraction = float(fraction_text)
            except ValueError:
                raise SelectionError(f"class entry {entry!r}: fraction {fraction_text!r} is not a number") from None
            if not 0.0 < fraction <= 1.0:
                raise SelectionError(f"class entry {entry!r}: fraction must be in (0, 1], got {fraction}")
        if any(request.name == name for request in requests):
            raise SelectionError(f"class {name!r} is listed twice in --class_names")
        requests.append(ClassRequest(name, group_filter, fraction))
    if not requests:
        raise SelectionError("--class_names names no class")
    return requests


def read_class_descriptions(path: Path) -> pd.DataFrame:
    """Read `class-descriptions-boxable.csv` (no header, rows like `/m/0gxl3,Handgun`).

    Returns a frame with the columns `id` (MID) and `ClassName`. Raises ValueError naming the file
    when it does not have exactly two columns.
    """
    descriptions = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    if descriptions.shape[1] != 2:
        raise ValueError(f"{path}: expected 2 columns (MID, display name), found {descriptions.shape[1]}")
    descriptions.columns = ["id", "ClassName"]
    return descriptions


def resolve_classes(descriptions: pd.DataFrame, requests: Sequence[ClassRequest], source: str) -> pd.DataFrame:
    """Rows of `descriptions` (id, ClassName) for the requested names; names must match exactly.

    Raises SelectionError listing, for each unknown name, the closest valid names; `source` names
    the descriptions file in that message.
    """
    valid_names = list(dict.fromkeys(descriptions["ClassName"]))
    problems = []
    for request in requests:
        if request.name in valid_names:
            continue
        # A case slip is the likeliest mistake, so exact case-insensitive matches come first.
        same_letters = [name for name in valid_names if name.lower() == request.name.lower()]
        similar = difflib.get_close_matches(request.name, valid_names, n=5, cutoff=0.6)
        suggestions = list(dict.fromkeys(same_letters + similar))[:5]
        hint = ", ".join(repr(name) for name in suggestions) if suggestions else "none similar"
        problems.append(f"unknown class name {request.name!r} (closest valid names: {hint})")
    if problems:
        raise SelectionError("; ".join(problems) + f"; the valid names are listed in {source}")
    wanted = {request.name for request in requests}
    return descriptions.loc[descriptions["ClassName"].isin(wanted)].reset_index(drop=True)


def read_annotations(path: Path, label_ids: Iterable[str], chunk_rows: int = _CSV_CHUNK_ROWS) -> pd.DataFrame:
    """Read the rows of a `<split>-annotations-bbox.csv` whose LabelName is in `label_ids`.

    The file is read `chunk_rows` rows at a time so that memory holds the wanted rows, not the
    1 GB train file. Raises ValueError naming the file when a column of ANNOTATION_COLUMNS is missing.
    """
    wanted = set(label_ids)
    header = pd.read_csv(path, nrows=0).columns
    missing = [column for column in ANNOTATION_COLUMNS if column not in header]
    if missing:
        raise ValueError(f"{path}: missing annotation columns {missing}")
    chunks = [
        chunk.loc[chunk["LabelName"].isin(wanted)]
        for chunk in pd.read_csv(path, dtype=_TEXT_COLUMNS, chunksize=chunk_rows)
    ]
    if not chunks:  # a header-only file yields no chunk at all
        return pd.DataFrame({column: pd.Series(dtype=object) for column in header})
    return pd.concat(chunks, ignore_index=True)


def select_boxes(
    annotations: pd.DataFrame,
    classes: pd.DataFrame,
    requests: Sequence[ClassRequest],
    *,
    include_depiction: bool = False,
    excluded_images: Iterable[str] = (),
    remove_overlapped: bool = False,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Boxes of the requested classes in one split, after every filter of the original downloader.

    annotations: rows of one split (ANNOTATION_COLUMNS); classes: output of `resolve_classes`.
    Order of filters: depictions dropped (unless include_depiction); images dropped that are in
    `excluded_images` or fail a class's group filter; then each class keeps `fraction` of its
    remaining images (rounded half up, chosen with `rng`). An image dropped for one class is
    dropped for every class, as in the original. With remove_overlapped, the single (non-group)
    boxes of images that also hold a group box are removed.
    Returns the kept rows in file order, with the columns of `annotations` plus `id` and `ClassName`.
    """
    boxes = annotations.merge(classes, left_on="LabelName", right_on="id", how="inner")
    if not include_depiction:
        boxes = boxes.loc[boxes["IsDepiction"] != 1]

    excluded = set(excluded_images)
    for request in requests:
        of_class = boxes.loc[boxes["ClassName"] == request.name]
        if request.group_filter == "group":
            excluded |= set(of_class.loc[of_class["IsGroupOf"] != 1, "ImageID"])
        elif request.group_filter == "~group":
            excluded |= set(of_class.loc[of_class["IsGroupOf"] == 1, "ImageID"])

    # Fractions are taken of the images that survived the filters above, so `:0.5` means half of
    # what would otherwise be downloaded.
    sampled_out: set[str] = set()
    for request in requests:
        if request.fraction >= 1.0:
            continue
        images = boxes.loc[boxes["ClassName"] == request.name, "ImageID"].unique()
        images = np.array([image for image in images if image not in excluded], dtype=object)
        kept = math.floor(len(images) * request.fraction + 0.5)
        dropped = rng.permutation(len(images))[kept:]
        sampled_out |= set(images[dropped])
    excluded |= sampled_out

    boxes = boxes.loc[~boxes["ImageID"].isin(excluded)]
    if remove_overlapped:
        with_group = set(boxes.loc[boxes["IsGroupOf"] == 1, "ImageID"])
        boxes = boxes.loc[~(boxes["ImageID"].isin(with_group) & (boxes["IsGroupOf"] != 1))]
    return boxes.reset_index(drop=True)


def split_image_budget(image_counts: Mapping[str, int], max_images: int) -> dict[str, int]:
    """Share at most `max_images` images among splits in proportion to their image counts.

    Largest-remainder rounding, so the shares add up to min(max_images, total) exactly.
    Returns {split: images allowed}; never more than a split has.
    """
    total = sum(image_counts.values())
    if total <= max_images:
        return dict(image_counts)
    exact = {split: max_images * count / total for split, count in image_counts.items()}
    shares = {split: math.floor(value) for split, value in exact.items()}
    leftover = max_images - sum(shares.values())
    by_remainder = sorted(exact, key=lambda split: exact[split] - shares[split], reverse=True)
    for split in by_remainder[:leftover]:
        shares[split] += 1
    return shares


def limit_images(
    selections: Mapping[str, pd.DataFrame], max_images: int | None, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """Keep at most `max_images` images in total over all splits (None, 0 or negative: no limit).

    Each split keeps a random share proportional to its size (`split_image_budget`); every box of
    a kept image is kept. Row order is unchanged.
    """
    # 0 and -1 mean "all" as in the Jetson fork, whose --max-images defaults to -1.
    if max_images is None or max_images <= 0:
        return dict(selections)
    images = {split: boxes["ImageID"].unique() for split, boxes in selections.items()}
    budget = split_image_budget({split: len(ids) for split, ids in images.items()}, max_images)
    limited = {}
    for split, boxes in selections.items():
        kept = set(images[split][rng.permutation(len(images[split]))[: budget[split]]])
        limited[split] = boxes.loc[boxes["ImageID"].isin(kept)].reset_index(drop=True)
    return limited


def count_by_class(boxes: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Per requested class: `images` (distinct images holding a box of it) and `boxes`.

    Returns a frame indexed by class name in `class_names` order, zeros for absent classes.
    """
    box_counts = boxes.groupby("ClassName").size()
    image_counts = boxes.drop_duplicates(["ImageID", "ClassName"]).groupby("ClassName").size()
    counts = pd.DataFrame({"images": image_counts, "boxes": box_counts})
    return counts.reindex(list(class_names), fill_value=0).fillna(0).astype(int)


def format_counts(split: str, boxes: pd.DataFrame, class_names: Sequence[str]) -> str:
    """Multi-line summary of one split's selection: totals, then images and boxes per class."""
    lines = [f"{split}: {boxes['ImageID'].nunique()} images, {len(boxes)} boxes"]
    for name, row in count_by_class(boxes, class_names).iterrows():
        lines.append(f"  {name}: {row['images']} images, {row['boxes']} boxes")
    return "\n".join(lines)

"""Fixtures that write small VOC and Open Images roots into a temporary directory."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.datasets.synthetic import generate_voc_dataset


def voc_object(name, box, difficult=None):
    """One <object>; box is VOC's 1-based (xmin, ymin, xmax, ymax), written as given."""
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    xmin, ymin, xmax, ymax = box
    return (f"<object><name>{name}</name><pose>Unspecified</pose>{flag}<bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def voc_xml(objects, width=64, height=48):
    return (f"<annotation><folder>test</folder><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")


def write_jpeg(path: Path, width=64, height=48, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


class VOCRootBuilder:
    """Writes a VOC root: add(image_id, xml_text, with_image=True), then split(name, ids), labels(text)."""

    def __init__(self, root: Path):
        self.root = root
        for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def add(self, image_id, xml_text, with_image=True, width=64, height=48):
        (self.root / "Annotations" / f"{image_id}.xml").write_text(xml_text)
        if with_image:
            write_jpeg(self.root / "JPEGImages" / f"{image_id}.jpg", width, height, seed=len(image_id))
        return self

    def split(self, name, ids):
        (self.root / "ImageSets/Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
        return self

    def labels(self, text):
        (self.root / "labels.txt").write_text(text)
        return self


@pytest.fixture
def voc_root(tmp_path):
    """A factory: voc_root(name="voc") -> VOCRootBuilder writing under tmp_path/name."""
    def make(name="voc"):
        return VOCRootBuilder(tmp_path / name)
    return make


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A small synthetic shapes root: 12 trainval (3 without objects) + 4 test images, 160x120."""
    root = tmp_path_factory.mktemp("shapes")
    generate_voc_dataset(root, num_images=12, num_test=4, seed=3, width=160, height=120, empty_fraction=0.25)
    return root


def voc_with_flags(root: Path) -> Path:
    """A VOC root for format tests: 6 trainval + 3 test images (one without objects), 5 classes, some
    difficult boxes and a fractional box, as the other formats must carry them."""
    builder = VOCRootBuilder(root).labels("circle\nsquare\ntriangle\n")
    objects = {
        "a": [voc_object("circle", (3, 4, 30, 40), 0), voc_object("square", (35, 10, 60, 45), 1)],
        "b": [voc_object("triangle", (1, 1, 64, 48), 0)],
        "c": [],
        "d": [voc_object("square", (10.5, 7.25, 33.75, 21), 0), voc_object("circle", (40, 20, 50, 30), 0)],
        "e": [voc_object("circle", (5, 5, 25, 25), 1)],
        "f": [voc_object("triangle", (20, 8, 44, 40), 0)],
        "t1": [voc_object("circle", (4, 4, 20, 20), 0), voc_object("triangle", (30, 10, 60, 40), 1)],
        "t2": [voc_object("square", (12, 3, 50, 44), 0)],
        "t3": [],
    }
    for image_id, image_objects in objects.items():
        builder.add(image_id, voc_xml(image_objects))
    builder.split("trainval", list("abcdef")).split("test", ["t1", "t2", "t3"])
    return root


@pytest.fixture(scope="session")
def format_roots(tmp_path_factory):
    """The same images and boxes as voc/, coco/, yolo/ and csv/ roots (converted from voc/)."""
    import warnings

    from vision.datasets.convert import convert

    base = tmp_path_factory.mktemp("formats")
    voc_with_flags(base / "voc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # YOLO's dropped flags
        for target in ("coco", "yolo", "csv"):
            convert(base / "voc", base / target, target)
    return {name: base / name for name in ("voc", "coco", "yolo", "csv")}

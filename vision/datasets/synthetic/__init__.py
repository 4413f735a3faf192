"""A synthetic VOC-format data set of coloured shapes, for tests, the demo and a first run without downloads.

The command is ``python -m vision.datasets.synthetic`` (``vision.cli.synthetic_dataset``):

    python -m vision.datasets.synthetic --root data/shapes --num_images 2000 --num_test 200 --seed 0
    python -m vision.datasets.synthetic --root data/small --small_objects   # 640x480, 10-40 pixel objects
    python -m vision.datasets.synthetic --root data/mixed --mixed_sizes     # a small, a middle, a large class

Writes <root>/JPEGImages/<id>.jpg (real JPEGs), <root>/Annotations/<id>.xml (VOC XML, 1-based pixel
boxes), <root>/ImageSets/Main/{trainval,test}.txt and <root>/labels.txt (one class a line), so that
VOCDataset(root) reads it like any VOC root. ``--format coco|yolo|csv`` writes the same images and boxes
in that layout instead (through vision.datasets.convert; splits "trainval" and "test").

Each image: a textured background (smooth colour blotches, faint stripes, pixel noise) with 1..4 shapes
(circle, square, triangle, star, ring) whose class is their shape only: colour, size (by default 15-50 %
of the shorter image side), position and rotation are random. Objects overlap little (IoU < 0.3 between
any two, and at most 40 % of the smaller one covered) and are drawn largest first, so every object stays
visible. The output is a function of the arguments only: the same seed gives byte-identical files, and
image i does not depend on how many images are made.
"""
import multiprocessing
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple
from xml.etree import ElementTree

import cv2
import numpy as np

from vision.datasets.convert import convert
from vision.utils.atomic import staged_path
from vision.utils.labels import store_labels

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "ring")
ClassSizes = Sequence[Tuple[str, Tuple[float, float]]]  # ((class name, (min, max)), ...), fractions
_SUBPIXEL_BITS = 4  # cv2 drawing with fractional coordinates
_SUBPIXEL = 1 << _SUBPIXEL_BITS
# ``--small_objects``: 640x480 images whose objects are 10-40 pixels (box side), most of them below COCO's
# "small" area of 32x32, as in microscopy or distant people: what a larger input size is for.
SMALL_OBJECTS = {"width": 640, "height": 480, "min_size": 10 / 480, "max_size": 40 / 480}
# ``--mixed_sizes``: 640x480 images with three classes of very different sizes, as in microscopy sets: a
# small class (circles, 6-9 % of the shorter side: about 6 % x 8 % of the image), a middle one (squares,
# 15-30 %) and a large one (triangles, 40-70 %), 2-8 objects an image. The net types' own priors miss the
# small class (``benchmarks/bench_priors.py``).
MIXED_SIZES = {"width": 640, "height": 480, "classes": ("circle", "square", "triangle"), "min_objects": 2,
               "max_objects": 8, "class_sizes": (("circle", (0.06, 0.09)), ("square", (0.15, 0.30)),
                                                 ("triangle", (0.40, 0.70)))}


@dataclass
class SyntheticObject:
    name: str
    box: Tuple[float, float, float, float]  # 0-based pixel corners, as drawn


@dataclass
class SyntheticSummary:
    root: Path
    trainval_ids: List[str]
    test_ids: List[str]
    class_names: Tuple[str, ...]
    num_objects: int


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Float32 (H, W, 3) 0..255: colour blotches + faint stripes (pixel noise is added after the shapes)."""
    grid = rng.uniform(0, 1, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3)).astype(np.float32)
    base = rng.uniform(50, 205, size=3).astype(np.float32)
    blotches = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    image = base + (blotches - 0.5) * rng.uniform(40, 110)
    angle, period = rng.uniform(0, np.pi), rng.uniform(8, 60)
    x = np.arange(width, dtype=np.float32) * np.float32(np.cos(angle))
    y = np.arange(height, dtype=np.float32)[:, None] * np.float32(np.sin(angle))
    stripes = np.sin((x + y) * np.float32(2 * np.pi / period)) * np.float32(rng.uniform(0, 14))
    image += stripes[:, :, None]
    return image


def _polygon(kind: str, centre: np.ndarray, radius: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """(k, 2) float vertices of a square, triangle or star of circumradius `radius`."""
    if kind == "square":
        angles = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif kind == "triangle":
        angles = angle + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    else:  # star: 5 points, inner radius 0.38..0.5 of the outer
        angles = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * rng.uniform(0.38, 0.5))
    return centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]


def _shape_extent(kind: str, radius: float, angle: float) -> Tuple[np.ndarray, float]:
    """(half-extent (x, y) of the shape about its centre, to place it inside the image; longer side of
    its box)."""
    if kind in ("circle", "ring"):
        return np.array([radius, radius]), 2 * radius
    # The star's inner radius does not reach the box, so any generator will do.
    points = _polygon(kind, np.zeros(2), radius, angle, np.random.default_rng(0))
    return np.abs(points).max(axis=0), float((points.max(axis=0) - points.min(axis=0)).max())


def _draw(image: np.ndarray, kind: str, centre: np.ndarray, radius: float, angle: float, colour,
          rng: np.random.Generator) -> Tuple[float, float, float, float]:
    """Draw one shape on uint8 `image`; returns its box (x1, y1, x2, y2), 0-based pixel corners."""
    fixed_centre = tuple(int(v) for v in np.rint(centre * _SUBPIXEL))
    if kind == "circle":
        cv2.circle(image, fixed_centre, int(radius * _SUBPIXEL), colour, -1, cv2.LINE_AA, _SUBPIXEL_BITS)
        low, high = centre - radius, centre + radius
    elif kind == "ring":
        inner = radius * rng.uniform(0.45, 0.65)
        thickness = radius - inner
        mid = (radius + inner) / 2
        cv2.circle(image, fixed_centre, int(mid * _SUBPIXEL), colour, max(1, int(round(thickness))),
                   cv2.LINE_AA, _SUBPIXEL_BITS)
        half = mid + max(1, int(round(thickness))) / 2
        low, high = centre - half, centre + half
    else:
        points = _polygon(kind, centre, radius, angle, rng)
        cv2.fillPoly(image, [np.rint(points * _SUBPIXEL).astype(np.int32)], colour, cv2.LINE_AA, _SUBPIXEL_BITS)
        low, high = points.min(axis=0), points.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def _overlap_ok(box: np.ndarray, placed: List[np.ndarray], max_iou: float, max_covered: float) -> bool:
    for other in placed:
        width = min(box[2], other[2]) - max(box[0], other[0])
        height = min(box[3], other[3]) - max(box[1], other[1])
        if width <= 0 or height <= 0:
            continue
        intersection = width * height
        area_a = (box[2] - box[0]) * (box[3] - box[1])
        area_b = (other[2] - other[0]) * (other[3] - other[1])
        if intersection / (area_a + area_b - intersection) >= max_iou:
            return False
        if intersection / min(area_a, area_b) > max_covered:
            return False
    return True


def _contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> Tuple[int, int, int]:
    """A random colour at least 90 (Euclidean, RGB) from the background under the shape."""
    colour = rng.integers(0, 256, size=3)
    for _ in range(30):
        if np.linalg.norm(colour - background_mean) >= 90:
            break
        colour = rng.integers(0, 256, size=3)
    return tuple(int(v) for v in colour)


def render_image(seed: Sequence[int], width: int = 500, height: int = 375, num_objects: int = 2,
                 classes: Sequence[str] = SHAPE_CLASSES, min_size: float = 0.15, max_size: float = 0.5,
                 max_iou: float = 0.3, max_covered: float = 0.4, class_sizes: ClassSizes = ()
                 ) -> Tuple[np.ndarray, List[SyntheticObject]]:
    """One synthetic image: (RGB uint8 (height, width, 3), its objects). Shapes whose place cannot be found
    in 100 tries (too crowded) are left out, so the image can hold fewer than num_objects.
    Object sizes (box side) are min_size..max_size of the shorter image side, or for a class named in
    ``class_sizes`` (``((name, (min, max)), ...)``) its own range."""
    ranges = dict(class_sizes)
    rng = np.random.default_rng(list(seed))
    background = _background(rng, width, height)
    short_side = min(width, height)
    planned = []  # (box, kind, centre, radius, angle)
    placed_boxes: List[np.ndarray] = []
    for _ in range(num_objects):
        kind = classes[int(rng.integers(len(classes)))]
        side = rng.uniform(*ranges.get(kind, (min_size, max_size))) * short_side
        angle = rng.uniform(-np.pi / 9, np.pi / 9) if kind == "square" else rng.uniform(0, 2 * np.pi)
        # Scale so that the box's longer side is `side`, whatever the shape and rotation.
        radius = side / _shape_extent(kind, 1.0, angle)[1]
        half = _shape_extent(kind, radius, angle)[0]
        if np.any(2 * half + 2 >= (width, height)):
            continue
        for _ in range(100):
            centre = rng.uniform(half + 1, np.array([width, height]) - half - 1)
            box = np.concatenate([centre - half, centre + half])
            if _overlap_ok(box, placed_boxes, max_iou, max_covered):
                placed_boxes.append(box)
                planned.append((box, kind, centre, radius, angle))
                break
    image = np.clip(background, 0, 255).astype(np.uint8)
    objects = []
    # Largest first, so that a smaller shape is never hidden under a larger one.
    for box, kind, centre, radius, angle in sorted(planned, key=lambda item: -(item[0][2] - item[0][0])):
        x1, y1, x2, y2 = np.clip(np.rint(box).astype(int), 0, [width - 1, height - 1, width - 1, height - 1])
        colour = _contrasting_colour(rng, image[y1:y2 + 1, x1:x2 + 1].reshape(-1, 3).mean(axis=0))
        drawn = _draw(image, kind, centre, radius, angle, colour, rng)
        objects.append(SyntheticObject(kind, drawn))
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(rng.uniform(3, 10))
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, objects


def voc_xml(image_id: str, width: int, height: int, objects: List[SyntheticObject]) -> bytes:
    """VOC annotation XML; boxes written as VOC's 1-based pixels (0-based corner + 1), inside the image."""
    annotation = ElementTree.Element("annotation")
    ElementTree.SubElement(annotation, "folder").text = "synthetic"
    ElementTree.SubElement(annotation, "filename").text = f"{image_id}.jpg"
    source = ElementTree.SubElement(annotation, "source")
    ElementTree.SubElement(source, "database").text = "pytorch-ssd synthetic shapes"
    size = ElementTree.SubElement(annotation, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    ElementTree.SubElement(annotation, "segmented").text = "0"
    for obj in objects:
        element = ElementTree.SubElement(annotation, "object")
        ElementTree.SubElement(element, "name").text = obj.name
        ElementTree.SubElement(element, "pose").text = "Unspecified"
        ElementTree.SubElement(element, "truncated").text = "0"
        ElementTree.SubElement(element, "difficult").text = "0"
        bndbox = ElementTree.SubElement(element, "bndbox")
        x1, y1, x2, y2 = obj.box
        limits = (width, height, width, height)
        for tag, value, limit in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), limits):
            ElementTree.SubElement(bndbox, tag).text = str(int(min(max(round(value) + 1, 1), limit)))
    ElementTree.indent(annotation, space="\t")
    return ElementTree.tostring(annotation, encoding="utf-8") + b"\n"


def generate_voc_dataset(root, num_images: int = 200, num_test: int = None, seed: int = 0, width: int = 500,
                         height: int = 375, min_objects: int = 1, max_objects: int = 4,
                         empty_fraction: float = 0.0, min_size: float = 0.15, max_size: float = 0.5,
                         classes: Sequence[str] = SHAPE_CLASSES, jpeg_quality: int = 90,
                         num_workers: int = 1, class_sizes: ClassSizes = ()) -> SyntheticSummary:
    """Write a synthetic VOC root (see the module docstring) and return what was written.

    num_images: trainval images; num_test: test images (default num_images // 10). Ids are 000000.. for
    trainval, then the test ones. empty_fraction: share of images (in each split, rounded) with no object.
    min_size/max_size: an object's box (longer side) as a fraction of the shorter image side; class_sizes:
    ``((class, (min, max)), ...)`` ranges for some classes instead (e.g. :data:`MIXED_SIZES`).
    num_workers: processes to render with (the files do not depend on it). Raises ValueError on bad arguments.
    """
    if num_test is None:
        num_test = num_images // 10
    if num_images < 0 or num_test < 0:
        raise ValueError("num_images and num_test must be >= 0")
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if not 0.0 <= empty_fraction <= 1.0:
        raise ValueError(f"empty_fraction must be in [0, 1], got {empty_fraction}")
    if not 0 < min_size <= max_size < 1:
        raise ValueError(f"need 0 < min_size <= max_size < 1, got {min_size}, {max_size}")
    class_sizes = tuple((str(name), (float(low), float(high))) for name, (low, high) in class_sizes)
    for name, (low, high) in class_sizes:
        if not 0 < low <= high < 1:
            raise ValueError(f"class {name}: need 0 < min <= max < 1, got {low}, {high}")
    root = Path(root)
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    master = np.random.default_rng([seed, 0xC0FFEE])
    trainval = [f"{i:06d}" for i in range(num_images)]
    test = [f"{i:06d}" for i in range(num_images, num_images + num_test)]
    empty = set()
    for first, size in ((0, num_images), (num_images, num_test)):
        count = int(round(empty_fraction * size))
        empty.update(int(first + i) for i in master.permutation(size)[:count])
    jobs = [(root, seed, index, 0 if index in empty else None, width, height, min_objects, max_objects, min_size,
             max_size, tuple(classes), jpeg_quality, class_sizes) for index in range(num_images + num_test)]
    if num_workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context().Pool(num_workers) as pool:
            total_objects = sum(pool.imap_unordered(_write_image, jobs, chunksize=16))
    else:
        total_objects = sum(map(_write_image, jobs))
    _write_file(root / "ImageSets/Main/trainval.txt", "".join(f"{i}\n" for i in trainval).encode())
    _write_file(root / "ImageSets/Main/test.txt", "".join(f"{i}\n" for i in test).encode())
    store_labels(root / "labels.txt", classes)
    return SyntheticSummary(root, trainval, test, tuple(classes), total_objects)


def generate_dataset(root, dataset_format: str = "voc", **options) -> SyntheticSummary:
    """generate_voc_dataset(root, **options) in the layout `dataset_format` (voc, coco, yolo or csv): the
    same images and boxes whatever the format. For the other formats the VOC root is written to a
    temporary folder beside `root` and converted (images hard-linked), so `root` must be new or empty."""
    if dataset_format == "voc":
        return generate_voc_dataset(root, **options)
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{root.name}-voc-", dir=root.parent) as temporary:
        summary = generate_voc_dataset(temporary, **options)
        convert(temporary, root, dataset_format, source_format="voc")
    summary.root = root
    return summary


def _write_image(job) -> int:
    """Render, encode and write one image and its XML; returns its number of objects."""
    (root, seed, index, forced_count, width, height, min_objects, max_objects, min_size, max_size, classes,
     jpeg_quality, class_sizes) = job
    image_id = f"{index:06d}"
    num_objects = forced_count
    if num_objects is None:
        num_objects = int(np.random.default_rng([seed, index, 1]).integers(min_objects, max_objects + 1))
    image, objects = render_image((seed, index), width, height, num_objects, classes, min_size, max_size,
                                  class_sizes=class_sizes)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for image {image_id}")
    _write_file(root / "JPEGImages" / f"{image_id}.jpg", encoded.tobytes())
    _write_file(root / "Annotations" / f"{image_id}.xml", voc_xml(image_id, width, height, objects))
    return len(objects)


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see vision.utils.atomic). Not flushed to disk one by one: the files
    are a function of the arguments, so a power cut costs a re-run, and an fsync per file would slow it."""
    with staged_path(path, fsync=False) as temporary:
        Path(temporary).write_bytes(data)

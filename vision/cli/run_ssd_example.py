"""``run_ssd_example.py``: detect objects in images and write them with the boxes drawn.

    python run_ssd_example.py <net> <model.pth> <labels.txt> <image> [<image> ...]
        [--output PATH] [--prob_threshold 0.4] [--top_k 10] [--device cpu|cuda:0] [--json PATH]
        [--backend pytorch|onnx]

One image: the result goes to ``run_ssd_example_output.jpg`` (the original's name) or ``--output`` (a
folder gets ``<stem>_ssd.jpg`` inside it, a name without an extension gets ``.jpg``). An unreadable image
(missing, empty, truncated, not an image) is skipped with a warning naming it; the others and the JSON are
still written, and the exit status is non-zero only when no image could be read.
Several images, a folder or a glob: ``--output`` is a folder (default ``run_ssd_example_output``) and
each result is ``<stem>_ssd.jpg``. Each detection is printed (label, score, box in pixels). With
``--backend onnx`` the second argument is an ``.onnx`` file from ``convert_to_caffe2_models.py`` and
torch is not imported.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2

from vision.cli.errors import run_reporting_errors
from vision.cli.flags import (
    add_backend_argument,
    add_detection_arguments,
    add_device_argument,
    add_engine_argument,
    add_input_size_argument,
    add_model_arguments,
    add_onnx_runtime_arguments,
)
from vision.runtime.detector import Detector, load_detector
from vision.runtime.images import expand_images, write_image
from vision.utils.atomic import check_writable, write_text
from vision.utils.drawing import draw_detections
from vision.utils.image_files import UnreadableImageError, read_bgr_image

SINGLE_OUTPUT = "run_ssd_example_output.jpg"
FOLDER_OUTPUT = "run_ssd_example_output"


@dataclass(frozen=True)
class ExampleSettings:
    """The command's flags, parsed once; the names are the flags'. ``images``: the arguments as given
    (files, folders, patterns); ``output``/``json``: None for the defaults of the module docstring."""

    net_type: str
    model_path: str
    label_path: str
    images: Tuple[str, ...]
    output: Optional[str] = None
    json: Optional[str] = None
    prob_threshold: float = 0.4
    top_k: int = 10
    candidate_size: Optional[int] = None
    device: Optional[str] = None
    backend: str = "pytorch"
    onnx_threads: int = 0
    onnx_optimization: str = "all"
    engine: str = "auto"
    mb2_width_mult: float = 1.0
    resolution: Optional[str] = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ExampleSettings":
        values = {name: getattr(args, name) for name in cls.__dataclass_fields__}
        return cls(**{**values, "images": tuple(args.images)})


def output_paths(images: Sequence[str], several: bool, output: Optional[str]) -> List[str]:
    """Where each result goes: ``output`` (default run_ssd_example_output.jpg) for one image; for several,
    ``<output folder>/<stem>_ssd.jpg``, with ``_2``, ``_3``... when two inputs share a stem. Creates the
    folders."""
    if not several:
        path = output or SINGLE_OUTPUT
        if os.path.isdir(path) or path.endswith(("/", os.sep)):
            path = os.path.join(path, f"{os.path.splitext(os.path.basename(images[0]))[0]}_ssd.jpg")
        elif not os.path.splitext(path)[1]:
            path += ".jpg"  # OpenCV picks the format by the extension
        check_writable(path, flag="--output")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return [path]
    folder = output or FOLDER_OUTPUT
    if os.path.isfile(folder):
        raise ValueError(f"--output {folder}: is a file; with several images --output is a folder")
    check_writable(folder, folder=True, flag="--output")
    os.makedirs(folder, exist_ok=True)
    paths, used = [], {}
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        used[stem] = used.get(stem, 0) + 1
        suffix = "" if used[stem] == 1 else f"_{used[stem]}"
        paths.append(os.path.join(folder, f"{stem}{suffix}_ssd.jpg"))
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects in images with a trained SSD and draw them.")
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns (quoted)")
    parser.add_argument("--output", default=None,
                        help=f"result image for one input (default {SINGLE_OUTPUT}); a folder for several "
                             f"(default {FOLDER_OUTPUT}/)")
    add_detection_arguments(parser)
    add_device_argument(parser)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the detections as JSON")
    add_backend_argument(parser)
    add_onnx_runtime_arguments(parser)
    add_engine_argument(parser)
    add_input_size_argument(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(run, ExampleSettings.from_args(build_parser().parse_args(argv)))


def run(settings: ExampleSettings) -> int:
    """Detect in every image, print and draw the detections, write the results (and the JSON); returns 0,
    or raises OSError when no image could be read."""
    images, several = expand_images(settings.images)
    if settings.json:
        check_writable(settings.json, flag="--json")  # before the work, not after every image is done
    detector = load_detector(settings.net_type, settings.model_path, settings.label_path, settings.backend,
                             settings.device, settings.candidate_size, settings.mb2_width_mult, settings.resolution,
                             onnx_threads=settings.onnx_threads, onnx_optimization=settings.onnx_optimization,
                             engine=settings.engine, engine_report=lambda line: print(line, file=sys.stderr))
    detector.expect_images(len(images))  # a single image never pays for building a CPU engine
    outputs = output_paths(images, several, settings.output)
    records, skipped = [], []
    for image_path, output_path in zip(images, outputs):
        try:
            image = read_bgr_image(image_path)  # a truncated JPEG is unreadable too, as in training
        except UnreadableImageError as error:
            print(f"warning: skipping {error}", file=sys.stderr)
            skipped.append(image_path)
            continue
        start = time.perf_counter()
        boxes, labels, probs = detector.detect(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), settings.top_k,
                                               settings.prob_threshold)
        milliseconds = (time.perf_counter() - start) * 1e3
        print(f"{image_path}: {len(labels)} objects ({milliseconds:.0f} ms)")
        detections = []
        for box, label, prob in zip(boxes, labels, probs):
            name = detector.class_names[label]
            pixels = [round(float(value), 1) for value in box]
            print(f"  {name}: {prob:.2f} [{', '.join(f'{value:.1f}' for value in pixels)}]")
            detections.append({"label": name, "class_index": int(label), "score": round(float(prob), 6), "box": pixels})
        draw_detections(image, boxes, labels, probs, detector.class_names)
        write_image(output_path, image)
        print(f"  The output image is {output_path}")
        records.append({"image": image_path, "output": output_path, "width": image.shape[1], "height": image.shape[0],
                        "milliseconds": round(milliseconds, 1), "detections": detections})
    if settings.json:
        write_json(settings.json, settings, detector, records, skipped)
        print(f"Detections written to {settings.json}")
    if skipped:
        print(f"warning: skipped {len(skipped)} of {len(images)} images that could not be read", file=sys.stderr)
    if not records:
        more = ", ..." if len(images) > 1 else ""
        raise OSError(f"none of the {len(images)} images could be read ({images[0]}{more})")
    return 0


def write_json(path: str, settings: ExampleSettings, detector: Detector, records: list,
               skipped: Sequence[str] = ()) -> None:
    """Detections as JSON, written atomically: the settings, then per image its size, output and detections
    (label name, class index, score, box ``[x1, y1, x2, y2]`` in pixels), and the images that could not be
    read."""
    document = {"net_type": settings.net_type, "model": settings.model_path, "backend": detector.backend,
                "device": detector.device, "prob_threshold": settings.prob_threshold, "top_k": settings.top_k,
                "class_names": detector.class_names, "images": records, "skipped": list(skipped)}
    write_text(path, json.dumps(document, indent=2))


if __name__ == "__main__":
    sys.exit(main())

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
import glob
import json
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

import cv2

from vision.cli.errors import run_reporting_errors
from vision.utils.drawing import draw_detections
from vision.inference import BACKENDS, Detector, load_detector
from vision.utils.image_files import UnreadableImageError, read_bgr_image

SINGLE_OUTPUT = "run_ssd_example_output.jpg"
FOLDER_OUTPUT = "run_ssd_example_output"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def expand_images(arguments: Sequence[str]) -> Tuple[List[str], bool]:
    """Image paths from files, folders (their images, sorted) and glob patterns; and whether the input is
    several images (more than one, or any folder or pattern). Raises FileNotFoundError naming the argument."""
    paths: List[str] = []
    several = len(arguments) > 1
    for argument in arguments:
        if os.path.isdir(argument):
            several = True
            found = sorted(os.path.join(argument, name) for name in os.listdir(argument)
                           if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(argument, name)))
            if not found:
                raise FileNotFoundError(f"{argument}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths += found
        elif os.path.isfile(argument):
            paths.append(argument)
        elif glob.has_magic(argument):
            several = True
            found = sorted(path for path in glob.glob(argument) if os.path.isfile(path))
            if not found:
                raise FileNotFoundError(f"{argument}: no file matches the pattern")
            paths += found
        else:
            raise FileNotFoundError(f"{argument}: no such image file")
    return paths, several


def output_paths(images: Sequence[str], several: bool, output: Optional[str]) -> List[str]:
    """Where each result goes: ``output`` (default run_ssd_example_output.jpg) for one image; for several,
    ``<output folder>/<stem>_ssd.jpg``, with ``_2``, ``_3``... when two inputs share a stem."""
    if not several:
        path = output or SINGLE_OUTPUT
        if os.path.isdir(path) or path.endswith(("/", os.sep)):
            path = os.path.join(path, f"{os.path.splitext(os.path.basename(images[0]))[0]}_ssd.jpg")
        elif not os.path.splitext(path)[1]:
            path += ".jpg"  # OpenCV picks the format by the extension
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return [path]
    folder = output or FOLDER_OUTPUT
    if os.path.isfile(folder):
        raise ValueError(f"--output {folder}: is a file; with several images --output is a folder")
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
    parser.add_argument("net_type", help="vgg16-ssd, mb1-ssd, mb1-ssd-lite, mb2-ssd-lite, mb3-large-ssd-lite, "
                                         "mb3-small-ssd-lite or sq-ssd-lite")
    parser.add_argument("model_path", help="the trained .pth, a zoo name or URL (python -m vision.zoo list), or with --backend onnx the exported .onnx")
    parser.add_argument("label_path", help="the model's label file (class names, BACKGROUND first); - for a zoo entry's labels")
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns (quoted)")
    parser.add_argument("--output", default=None,
                        help=f"result image for one input (default {SINGLE_OUTPUT}); a folder for several "
                             f"(default {FOLDER_OUTPUT}/)")
    parser.add_argument("--prob_threshold", type=float, default=0.4, help="minimum score of a detection")
    parser.add_argument("--top_k", type=int, default=10, help="most detections per class (-1: all)")
    parser.add_argument("--candidate_size", type=int, default=None,
                        help="boxes per class before NMS (default 200; an ONNX postprocess graph's own)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:0 when available)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the detections as JSON")
    parser.add_argument("--backend", default="pytorch", choices=BACKENDS,
                        help="pytorch (a .pth) or onnx (an .onnx made by convert_to_caffe2_models.py)")
    parser.add_argument("--onnx_threads", type=int, default=0,
                        help="with --backend onnx: ONNX Runtime intra-op threads (0: one per physical core)")
    parser.add_argument("--onnx_optimization", default="all", choices=("disable", "basic", "extended", "all"),
                        help="with --backend onnx: ONNX Runtime graph optimisation level")
    parser.add_argument("--mb2_width_mult", type=float, default=1.0, help="width multiplier of mb2-ssd-lite")
    parser.add_argument("--resolution", default=None,
                        help="input size, N or WxH (e.g. 512, 512x288); default: the size in the model's .pth.json "
                             "sidecar (an .onnx: its own), else the net's native size")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(run, build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    images, several = expand_images(args.images)
    detector = load_detector(args.net_type, args.model_path, args.label_path, args.backend, args.device,
                             args.candidate_size, args.mb2_width_mult, args.resolution,
                             onnx_threads=args.onnx_threads, onnx_optimization=args.onnx_optimization)
    outputs = output_paths(images, several, args.output)
    records, skipped = [], []
    for image_path, output_path in zip(images, outputs):
        try:
            image = read_bgr_image(image_path)  # a truncated JPEG is unreadable too, as in training
        except UnreadableImageError as error:
            print(f"warning: skipping {error}", file=sys.stderr)
            skipped.append(image_path)
            continue
        start = time.perf_counter()
        boxes, labels, probs = detector.detect(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), args.top_k, args.prob_threshold)
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
    if args.json:
        write_json(args.json, args, detector, records, skipped)
        print(f"Detections written to {args.json}")
    if skipped:
        print(f"warning: skipped {len(skipped)} of {len(images)} images that could not be read", file=sys.stderr)
    if not records:
        raise OSError(f"none of the {len(images)} images could be read ({images[0]}{', ...' if len(images) > 1 else ''})")
    return 0


def write_image(path: str, image) -> None:
    """``cv2.imwrite`` with a one-line OSError when it fails (OpenCV 5 raises where older versions
    returned False)."""
    try:
        written = cv2.imwrite(path, image)
    except cv2.error as error:
        reason = next((line.strip() for line in str(error).splitlines() if "error:" in line), str(error).strip())
        raise OSError(f"{path}: cannot write the image ({reason[:160]}); use an extension such as .jpg or .png") from None
    if not written:
        raise OSError(f"{path}: cannot write the image; use an extension such as .jpg or .png, in a writable folder")


def write_json(path: str, args: argparse.Namespace, detector: Detector, records: list, skipped: Sequence[str] = ()) -> None:
    """Detections as JSON: the settings, then per image its size, output and detections (label name,
    class index, score, box ``[x1, y1, x2, y2]`` in pixels), and the images that could not be read."""
    document = {"net_type": args.net_type, "model": args.model_path, "backend": detector.backend,
                "device": detector.device, "prob_threshold": args.prob_threshold, "top_k": args.top_k,
                "class_names": detector.class_names, "images": records, "skipped": list(skipped)}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())

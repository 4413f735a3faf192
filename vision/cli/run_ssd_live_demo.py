"""``run_ssd_live_demo.py``: detect objects in a camera, video file or stream, frame by frame.

    python run_ssd_live_demo.py <net> <model.pth> <labels.txt> [video file, URL or camera index]
        [--headless] [--output run_ssd_live_demo_output.mp4] [--prob_threshold 0.4] [--top_k 10]
        [--backend pytorch|onnx] [--device cpu|cuda:0] [--max_frames N]

Camera 0 by default. Each frame gets its detections and the measured FPS drawn on it. With a GUI
(OpenCV built with one, and a display) the frames are shown in a window and ``q`` quits; otherwise, or
with ``--headless``, they are written to ``--output`` and a line per second reports FPS and detection
counts. A file ends cleanly at its last frame; Ctrl-C ends a camera run cleanly (the video is kept).

Frames are read in a separate thread into a small bounded queue, so decoding overlaps inference and
memory stays flat however long the stream: a file's frames are all processed (the reader waits), a
live source's oldest unprocessed frame is dropped when inference falls behind.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import cv2
import numpy as np

from vision.cli.errors import run_reporting_errors
from vision.inference import BACKENDS, Detector, load_detector
from vision.video import (FrameReader, SourceError, VideoFileSink, WindowSink, aspect_ratio_note, gui_available,
                          open_source, run_stream)

DEFAULT_OUTPUT = "run_ssd_live_demo_output.mp4"


# -- command line -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects live in a camera, video file or stream.")
    parser.add_argument("net_type", help="vgg16-ssd, mb1-ssd, mb1-ssd-lite, mb2-ssd-lite, mb3-large-ssd-lite, "
                                         "mb3-small-ssd-lite or sq-ssd-lite")
    parser.add_argument("model_path", help="the trained .pth, a zoo name or URL (python -m vision.zoo list), or with --backend onnx the exported .onnx")
    parser.add_argument("label_path", help="the model's label file (class names, BACKGROUND first); - for a zoo entry's labels")
    parser.add_argument("source", nargs="?", default="0", help="video file, URL or camera index (default 0)")
    parser.add_argument("--headless", action="store_true", help="never open a window; write --output instead")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"video written when headless (default {DEFAULT_OUTPUT})")
    parser.add_argument("--prob_threshold", type=float, default=0.4, help="minimum score of a detection")
    parser.add_argument("--top_k", type=int, default=10, help="most detections per class (-1: all)")
    parser.add_argument("--candidate_size", type=int, default=None, help="boxes per class before NMS (default 200)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:0 when available)")
    parser.add_argument("--backend", default="pytorch", choices=BACKENDS,
                        help="pytorch (a .pth) or onnx (an .onnx made by convert_to_caffe2_models.py)")
    parser.add_argument("--onnx_threads", type=int, default=0,
                        help="with --backend onnx: ONNX Runtime intra-op threads (0: one per physical core)")
    parser.add_argument("--onnx_optimization", default="all", choices=("disable", "basic", "extended", "all"),
                        help="with --backend onnx: ONNX Runtime graph optimisation level")
    parser.add_argument("--max_frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    parser.add_argument("--camera_width", type=int, default=1280, help="frame width asked of a camera")
    parser.add_argument("--camera_height", type=int, default=720, help="frame height asked of a camera")
    parser.add_argument("--mb2_width_mult", type=float, default=1.0, help="width multiplier of mb2-ssd-lite")
    parser.add_argument("--resolution", default=None,
                        help="input size, N or WxH (e.g. 512, 512x288); default: the size in the model's .pth.json "
                             "sidecar (an .onnx: its own), else the net's native size")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(run, build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    detector: Detector = load_detector(args.net_type, args.model_path, args.label_path, args.backend, args.device,
                                       args.candidate_size, args.mb2_width_mult, args.resolution,
                                       onnx_threads=args.onnx_threads, onnx_optimization=args.onnx_optimization)
    capture, description, live = open_source(args.source, args.camera_width, args.camera_height)
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    headless = args.headless or not gui_available()
    sink = VideoFileSink(args.output, source_fps) if headless else WindowSink()
    report = (lambda line: print(line, flush=True)) if headless else None
    target = f"writing the annotated video to {args.output}" if headless else f"showing the {sink.description}"
    input_width, input_height = detector.input_size
    print(f"Reading {description} with {args.net_type} at {input_width}x{input_height} ({detector.backend}, "
          f"{detector.device}); {target}", flush=True)
    note = aspect_ratio_note((int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))),
                             detector.input_size)
    if note:
        print(f"Note: {note}", flush=True)

    def detect(image_rgb: np.ndarray):
        return detector.detect(image_rgb, args.top_k, args.prob_threshold)

    interrupted = False
    with FrameReader(capture, drop_frames=live) as reader:
        try:
            stats = run_stream(reader, detect, detector.class_names, sink, report, args.max_frames)
        except KeyboardInterrupt:
            interrupted, stats = True, None
        finally:
            sink.close()
    if reader.error is not None:
        raise SourceError(f"{description}: reading failed ({reader.error})")
    if interrupted:
        print("Interrupted." + (f" The video so far is in {args.output}" if headless else ""))
        return 0
    if stats.frames == 0:
        raise SourceError(f"{description}: no frame could be read")
    dropped = f", {reader.dropped} frames dropped to keep up" if reader.dropped else ""
    print(f"{stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} FPS), {stats.detections} detections{dropped}"
          + (f"; wrote {args.output}" if headless else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

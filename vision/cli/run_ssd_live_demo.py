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
import os
import sys
from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np

from vision.cli.errors import run_reporting_errors
from vision.cli.flags import (
    add_backend_argument,
    add_detection_arguments,
    add_device_argument,
    add_engine_argument,
    add_input_size_argument,
    add_model_arguments,
    add_onnx_runtime_arguments,
    non_negative_int,
)
from vision.runtime.detector import Detector, load_detector
from vision.runtime.video import (
    FrameReader,
    SourceError,
    VideoFileSink,
    WindowSink,
    aspect_ratio_note,
    gui_available,
    open_source,
    run_stream,
)
from vision.utils.atomic import check_writable

DEFAULT_OUTPUT = "run_ssd_live_demo_output.mp4"


@dataclass(frozen=True)
class LiveDemoSettings:
    """The command's flags, parsed once; the names are the flags'. ``source``: a video file, URL or camera
    index as typed."""

    net_type: str
    model_path: str
    label_path: str
    source: str = "0"
    headless: bool = False
    output: str = DEFAULT_OUTPUT
    prob_threshold: float = 0.4
    top_k: int = 10
    candidate_size: Optional[int] = None
    device: Optional[str] = None
    backend: str = "pytorch"
    onnx_threads: int = 0
    onnx_optimization: str = "all"
    engine: str = "auto"
    max_frames: int = 0
    camera_width: int = 1280
    camera_height: int = 720
    mb2_width_mult: float = 1.0
    resolution: Optional[str] = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "LiveDemoSettings":
        values = {name: getattr(args, name) for name in cls.__dataclass_fields__}
        if not os.path.splitext(args.output)[1]:
            values["output"] = args.output + ".mp4"  # OpenCV picks the container by the extension
        return cls(**values)


def expected_frames(capture, live: bool, max_frames: int) -> Optional[int]:
    """How many frames the run will see: a file's frame count (capped by ``max_frames``), None for a camera
    or stream without ``max_frames`` (open-ended)."""
    count = 0 if live else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    if max_frames > 0:
        return min(count, max_frames) if count else max_frames
    return count or None


# -- command line -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects live in a camera, video file or stream.")
    add_model_arguments(parser)
    parser.add_argument("source", nargs="?", default="0", help="video file, URL or camera index (default 0)")
    parser.add_argument("--headless", action="store_true", help="never open a window; write --output instead")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"video written when headless (default {DEFAULT_OUTPUT}; a name without an extension "
                             "gets .mp4)")
    add_detection_arguments(parser)
    add_device_argument(parser)
    add_backend_argument(parser)
    add_onnx_runtime_arguments(parser)
    add_engine_argument(parser)
    parser.add_argument("--max_frames", type=non_negative_int, default=0,
                        help="stop after this many frames (0: no limit)")
    parser.add_argument("--camera_width", type=int, default=1280, help="frame width asked of a camera")
    parser.add_argument("--camera_height", type=int, default=720, help="frame height asked of a camera")
    add_input_size_argument(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(run, LiveDemoSettings.from_args(build_parser().parse_args(argv)))


def run(settings: LiveDemoSettings) -> int:
    """Detect in every frame of the source, show it or write the annotated video, print the summary;
    returns 0 (also when interrupted), or raises SourceError/OSError/ValueError with one line."""
    detector: Detector = load_detector(settings.net_type, settings.model_path, settings.label_path, settings.backend,
                                       settings.device, settings.candidate_size, settings.mb2_width_mult,
                                       settings.resolution, onnx_threads=settings.onnx_threads,
                                       onnx_optimization=settings.onnx_optimization, engine=settings.engine,
                                       engine_report=lambda line: print(line, flush=True))
    capture, description, live = open_source(settings.source, settings.camera_width, settings.camera_height)
    detector.expect_images(expected_frames(capture, live, settings.max_frames))
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    headless = settings.headless or not gui_available()
    if headless:
        check_writable(settings.output, flag="--output")  # before any frame: not after a long stream
    sink = VideoFileSink(settings.output, source_fps) if headless else WindowSink()
    report = (lambda line: print(line, flush=True)) if headless else None
    target = f"writing the annotated video to {settings.output}" if headless else f"showing the {sink.description}"
    input_width, input_height = detector.input_size
    print(f"Reading {description} with {settings.net_type} at {input_width}x{input_height} ({detector.backend}, "
          f"{detector.device}); {target}", flush=True)
    note = aspect_ratio_note((int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))),
                             detector.input_size)
    if note:
        print(f"Note: {note}", flush=True)

    def detect(image_rgb: np.ndarray):
        return detector.detect(image_rgb, settings.top_k, settings.prob_threshold)

    interrupted = False
    # The sink publishes its video when the body returns (an interrupted run included) and drops it when
    # the body raises.
    with FrameReader(capture, drop_frames=live) as reader, sink:
        try:
            stats = run_stream(reader, detect, detector.class_names, sink, report, settings.max_frames)
        except KeyboardInterrupt:
            interrupted, stats = True, None
    if reader.error is not None:
        raise SourceError(f"{description}: reading failed ({reader.error})")
    if interrupted:
        print("Interrupted." + (f" The video so far is in {settings.output}" if headless else ""))
        return 0
    if stats.frames == 0:
        raise SourceError(f"{description}: no frame could be read")
    dropped = f", {reader.dropped} frames dropped to keep up" if reader.dropped else ""
    print(f"{stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} FPS), {stats.detections} "
          f"detections{dropped}" + (f"; wrote {settings.output}" if headless else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import collections
import contextlib
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from vision.cli.errors import run_reporting_errors
from vision.utils.opencv_log import quiet_opencv
from vision.cli.run_ssd_example import BACKENDS, Detector, load_detector
from vision.utils.drawing import draw_detections, draw_status

DEFAULT_OUTPUT = "run_ssd_live_demo_output.mp4"
WINDOW_NAME = "annotated"  # the original's window title
FOURCCS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class SourceError(OSError):
    """A camera, file or stream that cannot be opened or read; the message names it."""


# -- input --------------------------------------------------------------------------------------------


def open_source(source: str, width: int = 1280, height: int = 720) -> Tuple[cv2.VideoCapture, str, bool]:
    """Open a camera index (``"0"``), a URL (``rtsp://...``) or a video file. Returns ``(capture,
    description, live)``; live sources (cameras, streams) may drop frames. Raises SourceError naming it."""
    with quiet_opencv():
        if source.isdigit():
            capture = cv2.VideoCapture(int(source))
            if not capture.isOpened():
                raise SourceError(f"camera {source}: cannot be opened (no such camera, or it is busy)")
            # The original asks cameras for 1280x720.
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            return capture, f"camera {source}", True
        if "://" in source:
            capture = cv2.VideoCapture(source)
            if not capture.isOpened():
                raise SourceError(f"{source}: cannot open the stream")
            return capture, source, True
        if not os.path.exists(source):
            raise SourceError(f"{source}: no such video file")
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise SourceError(f"{source}: cannot be read as a video")
        return capture, source, False


class FrameReader:
    """Reads BGR frames from a capture in a background thread into a queue of ``queue_size`` frames.

    Iterating yields the frames in order until the source ends or :meth:`close` is called. With
    ``drop_frames`` (live sources) a full queue loses its oldest frame, so the consumer sees recent
    frames; without, the reader waits, so every frame of a file is seen. Either way at most
    ``queue_size`` frames are held. The capture is released when reading ends.
    """

    _END = None

    def __init__(self, capture, drop_frames: bool, queue_size: int = 4):
        self.capture = capture
        self.drop_frames = drop_frames
        self.frames: "queue.Queue[Optional[np.ndarray]]" = queue.Queue(maxsize=queue_size)
        self.stopped = threading.Event()
        self.dropped = 0
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._read, name="frame-reader", daemon=True)

    def __enter__(self) -> "FrameReader":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            frame = self.frames.get()
            if frame is self._END:
                return
            yield frame

    def close(self) -> None:
        """Stop reading, wait for the thread, release the capture."""
        self.stopped.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.frames.get_nowait()  # unblock a reader waiting on a full queue
            self.thread.join(timeout=0.05)

    def _read(self) -> None:
        try:
            while not self.stopped.is_set():
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    break
                self._put(frame)
        except BaseException as error:  # reported by the consumer; the thread must still end the stream
            self.error = error
        finally:
            self.capture.release()
            if not self._put(self._END):
                self._force_put(self._END)  # closed early: make room so no consumer waits forever

    def _put(self, item) -> bool:
        """Queue ``item``: dropping the oldest frame when full (live), else waiting for room. False when
        :meth:`close` was called first."""
        while not self.stopped.is_set():
            if self.drop_frames:
                self._force_put(item)
                return True
            try:
                self.frames.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _force_put(self, item) -> None:
        while True:
            try:
                self.frames.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    if self.frames.get_nowait() is not self._END:
                        self.dropped += 1


# -- output -------------------------------------------------------------------------------------------
def gui_available() -> bool:
    """True when OpenCV was built with a GUI backend and a display exists (on Linux: DISPLAY or
    WAYLAND_DISPLAY set) and a window can actually be created."""
    build = cv2.getBuildInformation()
    gui_line = next((line for line in build.splitlines() if line.strip().startswith("GUI:")), "GUI: NONE")
    if gui_line.split(":", 1)[1].strip().upper() in ("", "NONE", "NO"):
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


class WindowSink:
    """Shows frames in a window; ``write`` returns False once ``q`` is pressed or the window is closed."""

    description = f"window {WINDOW_NAME!r} (press q to quit)"

    def write(self, frame: np.ndarray) -> bool:
        cv2.imshow(WINDOW_NAME, frame)
        key = cv2.waitKey(1) & 0xFF
        if key == ord("q"):
            return False
        return cv2.getWindowProperty(WINDOW_NAME, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyAllWindows()


class VideoFileSink:
    """Writes frames to a video file at ``fps``; opened at the first frame (its size is the video's).
    Written under a temporary name and renamed by :meth:`close`, so the path holds only finished videos."""

    def __init__(self, path: str, fps: float):
        self.path = path
        self.fps = fps if fps and fps > 0 else 30.0
        folder, name = os.path.split(os.path.abspath(path))
        self.partial = os.path.join(folder, f".partial-{name}")
        self.writer: Optional[cv2.VideoWriter] = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> bool:
        if self.writer is None:
            os.makedirs(os.path.dirname(self.partial), exist_ok=True)
            extension = os.path.splitext(self.path)[1].lower()
            fourcc = cv2.VideoWriter_fourcc(*FOURCCS.get(extension, "mp4v"))
            self.writer = cv2.VideoWriter(self.partial, fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                self.writer = None
                raise OSError(f"{self.path}: OpenCV cannot write this video (try an .mp4 or .avi name)")
        self.writer.write(frame)
        self.frames += 1
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            os.replace(self.partial, self.path)


# -- the loop -----------------------------------------------------------------------------------------
@dataclass
class StreamStats:
    frames: int = 0
    detections: int = 0
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class FpsMeter:
    """Frames per second over the last ``window`` frames (a fixed-size deque: constant memory)."""

    def __init__(self, window: int = 30, clock: Callable[[], float] = time.perf_counter):
        self.times = collections.deque(maxlen=window)
        self.clock = clock

    def tick(self) -> float:
        self.times.append(self.clock())
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)


def run_stream(frames, detect: Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]],
               class_names: List[str], sink, report: Optional[Callable[[str], None]] = None,
               max_frames: int = 0, clock: Callable[[], float] = time.perf_counter) -> StreamStats:
    """Detect, draw and hand each BGR frame of ``frames`` to ``sink`` until the frames end, the sink
    declines (``write`` returns False), or ``max_frames`` (0: no limit) are done.

    detect: RGB uint8 image -> ``(boxes (K, 4) pixels, labels (K,), probs (K,))``. report: called about
    once a second with a line of FPS and detection counts. Nothing per frame is kept.
    """
    stats = StreamStats()
    meter = FpsMeter(clock=clock)
    start = last_report = clock()
    frames_since, detections_since = 0, 0
    for frame in frames:
        boxes, labels, probs = detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        fps = meter.tick()
        draw_detections(frame, boxes, labels, probs, class_names)
        draw_status(frame, f"FPS: {fps:.1f}" if fps else "FPS: --")
        keep_going = sink.write(frame)
        stats.frames += 1
        stats.detections += len(labels)
        frames_since += 1
        detections_since += len(labels)
        now = clock()
        if report is not None and now - last_report >= 1.0:
            report(f"{now - start:6.1f} s  frame {stats.frames}  {frames_since / (now - last_report):5.1f} FPS  "
                   f"{detections_since / frames_since:.1f} detections/frame ({len(labels)} in the last)")
            last_report, frames_since, detections_since = now, 0, 0
        if not keep_going or (max_frames and stats.frames >= max_frames):
            break
    stats.seconds = clock() - start
    return stats


# -- command line -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects live in a camera, video file or stream.")
    parser.add_argument("net_type", help="vgg16-ssd, mb1-ssd, mb1-ssd-lite, mb2-ssd-lite, mb3-large-ssd-lite, "
                                         "mb3-small-ssd-lite or sq-ssd-lite")
    parser.add_argument("model_path", help="the trained .pth, or with --backend onnx the exported .onnx")
    parser.add_argument("label_path", help="the model's label file (class names, BACKGROUND first)")
    parser.add_argument("source", nargs="?", default="0", help="video file, URL or camera index (default 0)")
    parser.add_argument("--headless", action="store_true", help="never open a window; write --output instead")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"video written when headless (default {DEFAULT_OUTPUT})")
    parser.add_argument("--prob_threshold", type=float, default=0.4, help="minimum score of a detection")
    parser.add_argument("--top_k", type=int, default=10, help="most detections per class (-1: all)")
    parser.add_argument("--candidate_size", type=int, default=None, help="boxes per class before NMS (default 200)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:0 when available)")
    parser.add_argument("--backend", default="pytorch", choices=BACKENDS,
                        help="pytorch (a .pth) or onnx (an .onnx made by convert_to_caffe2_models.py)")
    parser.add_argument("--max_frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    parser.add_argument("--camera_width", type=int, default=1280, help="frame width asked of a camera")
    parser.add_argument("--camera_height", type=int, default=720, help="frame height asked of a camera")
    parser.add_argument("--mb2_width_mult", type=float, default=1.0, help="width multiplier of mb2-ssd-lite")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    return run_reporting_errors(run, build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    detector: Detector = load_detector(args.net_type, args.model_path, args.label_path, args.backend, args.device,
                                       args.candidate_size, args.mb2_width_mult)
    capture, description, live = open_source(args.source, args.camera_width, args.camera_height)
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    headless = args.headless or not gui_available()
    sink = VideoFileSink(args.output, source_fps) if headless else WindowSink()
    report = (lambda line: print(line, flush=True)) if headless else None
    target = f"writing the annotated video to {args.output}" if headless else f"showing the {sink.description}"
    print(f"Reading {description} with {args.net_type} ({detector.backend}, {detector.device}); {target}", flush=True)

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

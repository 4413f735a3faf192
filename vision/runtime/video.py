"""Video for the live demo: open a camera, file or stream; read frames in a background thread; show or
write annotated frames; measure FPS; and the detect-draw-sink loop (:func:`run_stream`).

Used by ``run_ssd_live_demo.py`` and by Python code that runs a detector over video.
"""
from __future__ import annotations

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

from vision.utils.atomic import StagedFiles
from vision.utils.drawing import draw_detections, draw_status
from vision.utils.opencv_log import quiet_opencv

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


def aspect_ratio_note(frame_size: Tuple[int, int], input_size: Tuple[int, int]) -> Optional[str]:
    """A hint when frames of ``frame_size`` ``(width, height)`` are stretched to a net input of another shape
    (aspect ratios more than 2 % apart): the ``--resolution`` of the same width that keeps their shape."""
    frame_width, frame_height = frame_size
    width, height = input_size
    if frame_width <= 0 or frame_height <= 0 or abs((frame_width / frame_height) / (width / height) - 1) <= 0.02:
        return None
    matching = f"{width}x{max(1, round(width * frame_height / frame_width))}"
    return (f"frames of {frame_width}x{frame_height} are stretched to the net's {width}x{height} input; "
            f"--resolution {matching} keeps their shape")


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
                    # Frames discarded after close() (the consumer stopped) were not dropped to keep up.
                    if self.frames.get_nowait() is not self._END and not self.stopped.is_set():
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
    """Shows frames in a window; ``write`` returns False once ``q`` is pressed or the window is closed.
    As a context manager it closes the window on exit."""

    description = f"window {WINDOW_NAME!r} (press q to quit)"

    def write(self, frame: np.ndarray) -> bool:
        cv2.imshow(WINDOW_NAME, frame)
        key = cv2.waitKey(1) & 0xFF
        if key == ord("q"):
            return False
        return cv2.getWindowProperty(WINDOW_NAME, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyAllWindows()

    def __enter__(self) -> "WindowSink":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class VideoFileSink:
    """Writes BGR frames to a video file at ``fps`` (30 when the source gives none); opened at the first
    frame (its size is the video's). The video is staged under a temporary name (``vision.utils.atomic``)
    and published by :meth:`close`, so ``path`` holds only finished videos; :meth:`discard` removes it.
    As a context manager: closed when the body returns, discarded when it raises."""

    def __init__(self, path: str, fps: float):
        self.path = path
        self.fps = fps if fps and fps > 0 else 30.0
        self.writer: Optional[cv2.VideoWriter] = None
        self.frames = 0
        self._staged: Optional[StagedFiles] = None
        self._video_path: Optional[str] = None

    def write(self, frame: np.ndarray) -> bool:
        if self.writer is None:
            self._staged = StagedFiles([self.path])
            extension = os.path.splitext(self.path)[1].lower()
            # OpenCV picks the container by the name's extension, which the staged name lacks: the video is
            # written beside it under the same hidden temporary prefix, so a killed run's file is still found
            # by remove_stale_temporaries.
            self._video_path = self._staged.path(self.path) + extension
            fourcc = cv2.VideoWriter_fourcc(*FOURCCS.get(extension, "mp4v"))
            with quiet_opencv():  # its own WARN lines would repeat the one-line error below
                writer = cv2.VideoWriter(self._video_path, fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not writer.isOpened():
                writer.release()
                self.discard()
                raise OSError(f"{self.path}: OpenCV cannot write this video (try an .mp4 or .avi name)")
            self.writer = writer
        self.writer.write(frame)
        self.frames += 1
        return True

    def close(self) -> None:
        """Finish the video and publish it under ``path`` (nothing happens when no frame was written)."""
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        try:
            os.replace(self._video_path, self._staged.path(self.path))
            self._staged.publish()
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the video being written; ``path`` is left as it was."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self._video_path is not None and os.path.exists(self._video_path):
            os.remove(self._video_path)
        if self._staged is not None:
            self._staged.__exit__(None, None, None)
        self._staged, self._video_path = None, None

    def __enter__(self) -> "VideoFileSink":
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


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

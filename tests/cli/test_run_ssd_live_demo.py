"""run_ssd_live_demo.py: headless runs on a generated video, clear errors, a reader thread with bounded memory."""
import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.export.nets import exported_model, label_path, saved_checkpoint
from vision.cli import run_ssd_live_demo
from vision.runtime.video import FrameReader, VideoFileSink, gui_available, run_stream

NET = "sq-ssd-lite"
FRAMES = 14


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 14-frame 192x144 MP4: a bright square moving over smooth noise."""
    path = tmp_path_factory.mktemp("video") / "moving_square.mp4"
    generator = np.random.default_rng(5)
    background = cv2.resize(generator.integers(0, 256, (18, 24, 3), dtype=np.uint8), (192, 144))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12, (192, 144))
    for index in range(FRAMES):
        frame = background.copy()
        cv2.rectangle(frame, (10 + 8 * index, 40), (70 + 8 * index, 100), (240, 240, 240), cv2.FILLED)
        writer.write(frame)
    writer.release()
    return path


def _frame_count(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _run(argv, capsys):
    code = run_ssd_live_demo.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("backend", ["pytorch", "onnx"])
def test_headless_run_writes_a_video_with_every_frame(tmp_path, capsys, video, backend):
    model = saved_checkpoint(NET) if backend == "pytorch" else exported_model(NET, False)
    output = tmp_path / "annotated.mp4"
    code, out, err = _run([NET, model, label_path(NET), video, "--headless", "--output", output,
                           "--backend", backend, "--prob_threshold", "0.3"], capsys)
    assert code == 0, err
    assert _frame_count(output) == _frame_count(video) == FRAMES
    assert f"{FRAMES} frames in" in out.splitlines()[-1] and f"wrote {output}" in out
    assert not list(tmp_path.glob(".annotated.mp4.tmp-*"))  # the finished video was renamed into place
    capture = cv2.VideoCapture(str(output))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (192, 144)
    capture.release()


def test_without_a_display_the_headless_path_is_taken(tmp_path, capsys, video, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert gui_available() is False
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), video, "--max_frames", "5"], capsys)
    assert code == 0, err
    assert _frame_count(tmp_path / "run_ssd_live_demo_output.mp4") == 5


@pytest.mark.parametrize("source,message", [
    ("7", "camera 7: cannot be opened"),
    ("missing.mp4", "missing.mp4: no such video file"),
    ("labels", "cannot be read as a video"),
])
def test_sources_that_cannot_be_opened_are_one_line_errors(tmp_path, capsys, source, message):
    if source == "missing.mp4":
        source = tmp_path / "missing.mp4"
    elif source == "labels":
        source = label_path(NET)
    code, out, err = _run([NET, saved_checkpoint(NET), label_path(NET), source, "--output", tmp_path / "x.mp4"], capsys)
    assert code == 1
    assert err.strip().splitlines() == [err.strip()] and message in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_wrong_label_file_is_a_one_line_error(tmp_path, capsys, video):
    code, _, err = _run([NET, saved_checkpoint(NET), REPO_ROOT / "models" / "voc-model-labels.txt", video,
                         "--output", tmp_path / "x.mp4"], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "but the net expects 21 classes" in err


class FakeCapture:
    """A capture of ``count`` frames, each filled with its index (mod 256) in pixel [0, 0, 0]."""

    def __init__(self, count, shape=(120, 160, 3), delay=0.0):
        self.count, self.shape, self.delay = count, shape, delay
        self.index = 0
        self.released = threading.Event()

    def read(self):
        if self.index >= self.count:
            return False, None
        time.sleep(self.delay)
        frame = np.zeros(self.shape, np.uint8)
        frame[0, 0, 0] = self.index % 256
        frame[0, 0, 1] = self.index // 256
        self.index += 1
        return True, frame

    def release(self):
        self.released.set()


def _index(frame):
    return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])


def test_file_reader_delivers_every_frame_in_order_even_to_a_slow_consumer():
    capture = FakeCapture(60)
    seen = []
    with FrameReader(capture, drop_frames=False, queue_size=3) as reader:
        for frame in reader:
            assert reader.frames.qsize() <= 3
            seen.append(_index(frame))
            if len(seen) % 20 == 0 or len(seen) > 55:
                time.sleep(0.1)  # the queue fills up, also when the end of the file is reached
    assert seen == list(range(60)) and reader.dropped == 0
    assert capture.released.is_set()


def test_live_reader_drops_the_oldest_frames_when_inference_falls_behind():
    capture = FakeCapture(300, delay=0.0005)
    seen = []
    with FrameReader(capture, drop_frames=True, queue_size=2) as reader:
        for frame in reader:
            seen.append(_index(frame))
            time.sleep(0.01)
    assert reader.dropped > 0 and len(seen) + reader.dropped == 300
    assert seen == sorted(seen) and seen[-1] == 299  # in order, and the newest frame is never lost


def test_stopping_early_ends_the_reader_thread_and_releases_the_capture():
    capture = FakeCapture(10_000)
    with FrameReader(capture, drop_frames=False, queue_size=2) as reader:
        for count, _ in enumerate(reader, start=1):
            if count == 5:
                break
    assert not reader.thread.is_alive() and capture.released.is_set()


class NullSink:
    def __init__(self):
        self.frames = 0

    def write(self, frame):
        self.frames += 1
        return True


def _stub_detect(image):
    return (np.array([[10, 10, 60, 50]], np.float32), np.array([1], np.int64), np.array([0.9], np.float32))


def test_memory_stays_flat_over_a_long_stream():
    """Peak traced memory of 600 frames is that of 100: nothing per frame is kept."""
    peaks = {}
    for count in (100, 600):
        tracemalloc.start()
        with FrameReader(FakeCapture(count, shape=(240, 320, 3)), drop_frames=False, queue_size=4) as reader:
            stats = run_stream(reader, _stub_detect, ["BACKGROUND", "cat"], NullSink())
        peaks[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert stats.frames == count
    frame_bytes = 240 * 320 * 3
    assert peaks[600] - peaks[100] < 2 * frame_bytes, peaks


def test_report_line_each_second_with_fps_and_detections():
    ticks = iter(np.arange(0, 100, 0.25))  # each clock reading is a quarter second later
    lines = []
    frames = [np.zeros((60, 80, 3), np.uint8) for _ in range(12)]
    stats = run_stream(iter(frames), _stub_detect, ["BACKGROUND", "cat"], NullSink(), report=lines.append,
                       clock=lambda: float(next(ticks)))
    assert stats.frames == 12
    assert len(lines) >= 5
    assert all("FPS" in line and "detections/frame" in line for line in lines)
    assert "1.0 detections/frame" in lines[0]


def test_sink_that_declines_ends_the_stream():
    class QuitAfterThree(NullSink):
        def write(self, frame):
            super().write(frame)
            return self.frames < 3

    sink = QuitAfterThree()
    stats = run_stream(iter([np.zeros((60, 80, 3), np.uint8)] * 10), _stub_detect, ["BACKGROUND", "cat"], sink)
    assert stats.frames == 3 == sink.frames


def test_video_file_sink_publishes_on_close_and_leaves_nothing_when_the_run_fails(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    with VideoFileSink(str(tmp_path / "kept.mp4"), 10) as sink:
        for _ in range(3):
            sink.write(frame)
        assert not (tmp_path / "kept.mp4").exists()  # only a finished video is under its name
    assert _frame_count(tmp_path / "kept.mp4") == 3
    with pytest.raises(RuntimeError, match="detector failed"):
        with VideoFileSink(str(tmp_path / "dropped.mp4"), 10) as sink:
            sink.write(frame)
            raise RuntimeError("detector failed")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.mp4"]

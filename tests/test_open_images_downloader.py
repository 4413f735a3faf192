"""open_images_downloader against real local servers.

The annotation CSVs come from an `http.server` in a thread, the images from a moto S3 server
(bucket `open-images-dataset`, public-read, as the real one) reached through a small forwarding
proxy that records which objects were fetched and can inject faults (stall, truncate, corrupt
once). The downloader runs in-process through `main()`, or as a real subprocess where a test
kills it mid-download.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import http.client
import http.server
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import boto3
import cv2
import numpy as np
import pandas as pd
import pytest

from vision.cli.open_images_downloader import build_parser, main
from vision.datasets.open_images_download_selection import (
    ANNOTATION_COLUMNS,
    ClassRequest,
    SelectionError,
    limit_images,
    parse_class_requests,
    read_annotations,
    read_class_descriptions,
    resolve_classes,
    select_boxes,
    split_image_budget,
)
from vision.utils.atomic import TEMPORARY_MARK, temporary_pattern

# A hung server or download fails the test instead of stalling the suite.
pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
BUCKET = "open-images-dataset"

# ---------------------------------------------------------------------------------------------
# The miniature release: classes, boxes and images.
# ---------------------------------------------------------------------------------------------

CLASS_DESCRIPTIONS = [
    ("/m/0gxl3", "Handgun"), ("/m/06nrc", "Shotgun"), ("/m/06c54", "Rifle"),
    ("/m/01yrx", "Cat"), ("/m/0bt9lr", "Dog"), ("/m/04yx4", "Man"),
]
MID = {name: mid for mid, name in CLASS_DESCRIPTIONS}

# All digits on purpose: read as a number it would lose its leading zeros.
NUMERIC_LOOKING = "0000000000000123"
HANDGUN_TWICE = "0a1b2c3d4e5f6a01"
HANDGUN_A = "0a1b2c3d4e5f6a02"
HANDGUN_B = "0a1b2c3d4e5f6a03"
MIXED_GROUP = "0a1b2c3d4e5f6a04"      # Shotgun group box + Shotgun single box + Handgun box
SHOTGUN_GROUP_ONLY = "0a1b2c3d4e5f6a05"
SHOTGUN_SINGLE_ONLY = "0a1b2c3d4e5f6a06"
HANDGUN_DRAWING = "0a1b2c3d4e5f6a07"  # only a depiction
CAT_ONLY = "0a1b2c3d4e5f6a08"
RIFLE_GOOD = "0a1b2c3d4e5f6a09"
RIFLE_CORRUPT = "0a1b2c3d4e5f6a0a"    # the bucket holds garbage under this key
RIFLE_MISSING = "0a1b2c3d4e5f6a0b"    # the bucket holds nothing under this key
VAL_HANDGUN = "1a1b2c3d4e5f6b01"
VAL_SHOTGUN = "1a1b2c3d4e5f6b02"
TEST_BOTH = "0200000000000001"  # the test split holds only all-digit ids


@dataclass(frozen=True)
class Box:
    split: str
    image_id: str
    class_name: str
    group: int = 0
    depiction: int = 0


BOXES = [
    Box("train", NUMERIC_LOOKING, "Handgun"), Box("train", NUMERIC_LOOKING, "Cat"),
    Box("train", HANDGUN_TWICE, "Handgun"), Box("train", HANDGUN_TWICE, "Handgun"),
    Box("train", HANDGUN_A, "Handgun"), Box("train", HANDGUN_B, "Handgun"),
    Box("train", MIXED_GROUP, "Shotgun", group=1), Box("train", MIXED_GROUP, "Shotgun"),
    Box("train", MIXED_GROUP, "Handgun"),
    Box("train", SHOTGUN_GROUP_ONLY, "Shotgun", group=1), Box("train", SHOTGUN_SINGLE_ONLY, "Shotgun"),
    Box("train", HANDGUN_DRAWING, "Handgun", depiction=1), Box("train", CAT_ONLY, "Cat"),
    Box("train", RIFLE_GOOD, "Rifle"), Box("train", RIFLE_CORRUPT, "Rifle"), Box("train", RIFLE_MISSING, "Rifle"),
    Box("validation", VAL_HANDGUN, "Handgun"), Box("validation", VAL_SHOTGUN, "Shotgun"),
    Box("test", TEST_BOTH, "Handgun"), Box("test", TEST_BOTH, "Shotgun"),
]
# Boxes of unrequested classes on images that are not in the bucket: they make the train CSV
# large enough to be caught half-written, and must never be selected.
FILLER_BOXES = [Box("train", f"f{index:015x}", ("Cat", "Dog", "Man")[index % 3]) for index in range(600)]

# What "Handgun,Shotgun" selects by default (no depictions, nothing of Cat or Rifle).
GUNS = {
    "train": {NUMERIC_LOOKING, HANDGUN_TWICE, HANDGUN_A, HANDGUN_B, MIXED_GROUP, SHOTGUN_GROUP_ONLY,
              SHOTGUN_SINGLE_ONLY},
    "validation": {VAL_HANDGUN, VAL_SHOTGUN},
    "test": {TEST_BOTH},
}


def annotation_rows(boxes: list[Box]) -> pd.DataFrame:
    """Boxes in the release's column layout, with distinct plausible corners."""
    rows = []
    for index, box in enumerate(boxes):
        x_min, y_min = 0.05 + 0.01 * (index % 20), 0.1 + 0.01 * (index % 30)
        rows.append([box.image_id, "xclick", MID[box.class_name], 1, x_min, x_min + 0.4, y_min, y_min + 0.5,
                     0, 0, box.group, box.depiction, 0])
    return pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS))


def noisy_jpeg(seed: int) -> bytes:
    """A real JPEG of noise, about 200 KB: large enough to span several 64 KB transfer chunks."""
    pixels = np.random.default_rng(seed).integers(0, 256, (360, 480, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def bucket_objects() -> dict[str, bytes]:
    """Object key -> bytes: a JPEG for every listed image but the missing one, garbage for the corrupt one."""
    objects = {}
    for seed, (split, image_id) in enumerate(sorted({(box.split, box.image_id) for box in BOXES})):
        if image_id == RIFLE_MISSING:
            continue
        objects[f"{split}/{image_id}.jpg"] = noisy_jpeg(seed)
    objects[f"train/{RIFLE_CORRUPT}.jpg"] = b"\xff\xd8\xff\xe0" + np.random.default_rng(99).bytes(5000)
    return objects


OBJECTS = bucket_objects()

# ---------------------------------------------------------------------------------------------
# Servers.
# ---------------------------------------------------------------------------------------------


class _FaultHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folder; records each path; can stall or cut a response halfway."""

    server: "CsvServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        fault = self.server.faults.get(self.path)
        if fault is None:
            super().do_GET()
            return
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if fault == "stall":
            self.server.release.wait(60)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


class CsvServer(http.server.ThreadingHTTPServer):
    """The annotation host: `url` serves `directory` as the public release lays it out."""

    daemon_threads = True

    def __init__(self, directory: Path):
        super().__init__(("127.0.0.1", 0), functools.partial(_FaultHandler, directory=str(directory)))
        self.requests: list[str] = []
        self.faults: dict[str, str] = {}  # path -> "stall" | "truncate"
        self.release = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards S3 requests to moto unchanged, except where a fault is set for the object key."""

    server: "S3Proxy"

    def do_GET(self) -> None:  # noqa: N802
        self._forward()

    def do_HEAD(self) -> None:  # noqa: N802
        self._forward()

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in ("host", "connection", "keep-alive")}
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()

        key = self.path.split("?")[0].removeprefix(f"/{BUCKET}/")
        fault = None
        if self.command == "GET":
            self.server.gets.append(key)
            if response.status == 200:
                fault = self.server.faults.get(key)
        if fault in ("corrupt_once", "truncate_once"):
            del self.server.faults[key]
        if fault == "corrupt_once":
            data = b"\xff\xd8\xff\xe0" + bytes(len(data) - 4)  # right length, undecodable

        self.send_response(response.status)
        for name, value in response.getheaders():
            # The public bucket's objects (uploaded in 2018) carry no x-amz-checksum, so botocore
            # cannot vouch for the bytes there; drop moto's to test the downloader's own checks.
            skipped = ("content-length", "transfer-encoding", "connection", "server", "date")
            if name.lower() not in skipped and not name.lower().startswith("x-amz-checksum"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault in ("stall", "truncate_once"):
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if fault == "stall":
                self.server.release.wait(60)
            return
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class S3Proxy(http.server.ThreadingHTTPServer):
    """The S3 endpoint the downloader talks to; `gets` lists the object keys fetched, in order."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.gets: list[str] = []
        self.faults: dict[str, str] = {}  # key -> "stall" | "truncate_once" | "corrupt_once"
        self.release = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[http.server.ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A user's HTTP proxy settings must not capture requests to the local servers.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[tuple[str, int]]:
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    admin = _admin_client(f"http://{host}:{port}")
    admin.create_bucket(Bucket=BUCKET, ACL="public-read")
    yield host, port
    server.stop()


def _admin_client(endpoint: str):
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test-key", aws_secret_access_key="test-secret")


@pytest.fixture
def bucket(moto_s3: tuple[str, int]):
    """The bucket reset to OBJECTS (public-read) before each test; yields an admin client."""
    admin = _admin_client(f"http://{moto_s3[0]}:{moto_s3[1]}")
    etags = {item["Key"]: item["ETag"].strip('"')
             for item in admin.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    for key in set(etags) - set(OBJECTS):
        admin.delete_object(Bucket=BUCKET, Key=key)
    for key, data in OBJECTS.items():
        if etags.get(key) != hashlib.md5(data).hexdigest():  # a plain upload's ETag is its MD5
            admin.put_object(Bucket=BUCKET, Key=key, Body=data, ACL="public-read")
    return admin


@pytest.fixture
def s3(moto_s3: tuple[str, int], bucket) -> Iterator[S3Proxy]:
    yield from _serve(S3Proxy(moto_s3))


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The annotation CSVs laid out as the public release (`<split>/<split>-annotations-bbox.csv`)."""
    folder = tmp_path_factory.mktemp("mirror")
    (folder / "class-descriptions-boxable.csv").write_text(
        "".join(f"{mid},{name}\n" for mid, name in CLASS_DESCRIPTIONS))
    for split in ("train", "validation", "test"):
        (folder / split).mkdir()
        rows = annotation_rows([box for box in BOXES + FILLER_BOXES if box.split == split])
        rows.to_csv(folder / split / f"{split}-annotations-bbox.csv", index=False)
    return folder


@pytest.fixture
def csv_host(mirror: Path) -> Iterator[CsvServer]:
    yield from _serve(CsvServer(mirror))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "open_images"


def downloader_args(root: Path, csv_host: CsvServer, s3: S3Proxy, class_names: str = "Handgun,Shotgun",
                    *extra: str) -> list[str]:
    return ["--root", str(root), "--class_names", class_names,
            "--annotations_url", csv_host.url, "--s3_endpoint_url", s3.url,
            "--retry", "3", "--retry_backoff", "0", "--num_workers", "4", *extra]


def image_ids(root: Path, split: str) -> set[str]:
    return {path.stem for path in (root / split).glob("*.jpg")}


def part_files(root: Path) -> list[Path]:
    """Every temporary file (vision.utils.atomic's ``.<name>.tmp-<random>``) left under root."""
    return sorted(root.rglob(f".*{TEMPORARY_MARK}*"))


def partial_file_written(path: Path) -> bool:
    """Whether a temporary file of `path` holds some bytes (the download of `path` is under way)."""
    return any(os.path.getsize(part) > 0 for part in glob.glob(temporary_pattern(path)) if os.path.isfile(part))


def sub_csv(root: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(root / f"sub-{split}-annotations-bbox.csv", dtype={"ImageID": str})


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"downloader exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_downloader(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, str(REPO / "open_images_downloader.py"), *args],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))


# ---------------------------------------------------------------------------------------------
# Class specs and selection (pure pandas).
# ---------------------------------------------------------------------------------------------


def test_class_spec_reads_group_filter_and_fraction_fields() -> None:
    assert parse_class_requests(" Handgun::0.5, Shotgun:~group ,Rifle:group,") == [
        ClassRequest("Handgun", "", 0.5), ClassRequest("Shotgun", "~group", 1.0), ClassRequest("Rifle", "group", 1.0)]


@pytest.mark.parametrize("spec, complaint", [
    ("Handgun:grouped", "group filter"), ("Handgun::1.5", "fraction"), ("Handgun::0", "fraction"),
    ("Handgun::half", "not a number"), ("Handgun,Handgun", "twice"), (" , ", "no class"),
    ("Handgun:group:0.5:x", "3 fields"),
])
def test_malformed_class_spec_is_rejected_with_reason(spec: str, complaint: str) -> None:
    with pytest.raises(SelectionError, match=complaint):
        parse_class_requests(spec)


@pytest.fixture(scope="module")
def train_boxes(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train annotations of the gun classes, class table) read back from CSV files as the tool does."""
    folder = tmp_path_factory.mktemp("selection")
    (folder / "classes.csv").write_text("".join(f"{mid},{name}\n" for mid, name in CLASS_DESCRIPTIONS))
    annotation_rows([box for box in BOXES if box.split == "train"]).to_csv(folder / "train.csv", index=False)
    classes = read_class_descriptions(folder / "classes.csv")
    guns = classes.loc[classes["ClassName"].isin(["Handgun", "Shotgun"])]
    return read_annotations(folder / "train.csv", guns["id"]), guns


def _images_by_class(boxes: pd.DataFrame) -> dict[str, set[str]]:
    return {name: set(group["ImageID"]) for name, group in boxes.groupby("ClassName")}


def _select(train_boxes, spec: str, seed: int = 0, **options) -> pd.DataFrame:
    annotations, classes = train_boxes
    return select_boxes(annotations, classes, parse_class_requests(spec), rng=np.random.default_rng(seed), **options)


def test_selection_keeps_requested_classes_without_depictions(train_boxes) -> None:
    boxes = _select(train_boxes, "Handgun,Shotgun")
    assert set(boxes["ImageID"]) == GUNS["train"]
    assert NUMERIC_LOOKING in set(boxes["ImageID"])  # leading zeros survived the CSV round trip
    assert set(boxes["ClassName"]) == {"Handgun", "Shotgun"}
    assert len(boxes) == 10


def test_include_depiction_keeps_drawings(train_boxes) -> None:
    boxes = _select(train_boxes, "Handgun", include_depiction=True)
    assert HANDGUN_DRAWING in set(boxes["ImageID"])


def test_group_filter_keeps_only_images_of_group_boxes_and_drops_them_for_every_class(train_boxes) -> None:
    by_class = _images_by_class(_select(train_boxes, "Handgun,Shotgun:group"))
    assert by_class["Shotgun"] == {SHOTGUN_GROUP_ONLY}
    # MIXED_GROUP also holds a single Shotgun box, so it goes, taking its Handgun box along.
    assert by_class["Handgun"] == {NUMERIC_LOOKING, HANDGUN_TWICE, HANDGUN_A, HANDGUN_B}


def test_not_group_filter_drops_images_with_group_boxes(train_boxes) -> None:
    by_class = _images_by_class(_select(train_boxes, "Handgun,Shotgun:~group"))
    assert by_class["Shotgun"] == {SHOTGUN_SINGLE_ONLY}
    assert MIXED_GROUP not in by_class["Handgun"]


def test_fraction_keeps_that_share_of_a_class_images_reproducibly(train_boxes) -> None:
    boxes = _select(train_boxes, "Handgun::0.5,Shotgun", seed=3)
    handgun_images = set(boxes.loc[boxes["ClassName"] == "Handgun", "ImageID"])
    assert len(handgun_images) == 3  # half of 5, rounded half up
    # An image sampled out for Handgun is gone for Shotgun too.
    dropped = {NUMERIC_LOOKING, HANDGUN_TWICE, HANDGUN_A, HANDGUN_B, MIXED_GROUP} - handgun_images
    assert not dropped & set(boxes["ImageID"])
    assert boxes.equals(_select(train_boxes, "Handgun::0.5,Shotgun", seed=3))
    choices = {frozenset(_select(train_boxes, "Handgun::0.5", seed=seed)["ImageID"]) for seed in range(10)}
    assert len(choices) > 1  # the choice is random across seeds


def test_filter_file_ids_and_remove_overlapped(train_boxes) -> None:
    boxes = _select(train_boxes, "Handgun,Shotgun", excluded_images={HANDGUN_A}, remove_overlapped=True)
    assert HANDGUN_A not in set(boxes["ImageID"])
    mixed = boxes.loc[boxes["ImageID"] == MIXED_GROUP]
    assert list(mixed["IsGroupOf"]) == [1]  # its single Shotgun and Handgun boxes are removed


def test_chunked_reading_matches_reading_at_once(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    annotation_rows([box for box in BOXES + FILLER_BOXES if box.split == "train"]).to_csv(path, index=False)
    wanted = [MID["Handgun"], MID["Cat"]]
    at_once = read_annotations(path, wanted)
    assert read_annotations(path, wanted, chunk_rows=7).equals(at_once)
    assert len(at_once) == 7 + 200 + 2  # Handgun boxes, every third filler box, two listed Cat boxes


def test_image_budget_is_shared_in_proportion_and_sums_exactly() -> None:
    assert split_image_budget({"train": 7, "validation": 2, "test": 1}, 5) == {"train": 4, "validation": 1, "test": 0}
    assert split_image_budget({"train": 7, "validation": 2, "test": 1}, 50) == {"train": 7, "validation": 2, "test": 1}
    train = annotation_rows([box for box in BOXES if box.split == "train"])
    limited = limit_images({"train": train, "validation": train.iloc[:0]}, 2, np.random.default_rng(0))
    assert limited["train"]["ImageID"].nunique() == 2
    assert limited["validation"].empty


def test_unknown_class_lists_the_closest_valid_names(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text("".join(f"{mid},{name}\n" for mid, name in CLASS_DESCRIPTIONS))
    with pytest.raises(SelectionError) as error:
        resolve_classes(read_class_descriptions(path), parse_class_requests("Handgnu,shotgun,Cat"), str(path))
    message = str(error.value)
    assert "'Handgnu' (closest valid names: 'Handgun'" in message
    assert "'shotgun' (closest valid names: 'Shotgun'" in message
    assert "unknown class name 'Cat'" not in message
    assert "\n" not in message


def test_jetson_max_images_spelling_is_accepted() -> None:
    args = build_parser().parse_args(["--root", "r", "--class_names", "Cat", "--max-images", "7"])
    assert args.max_images == 7


# ---------------------------------------------------------------------------------------------
# End to end against the local servers.
# ---------------------------------------------------------------------------------------------


def test_download_writes_the_original_layout_with_only_selected_images(root, mirror, csv_host, s3) -> None:
    assert main(downloader_args(root, csv_host, s3)) == 0

    for name in ["class-descriptions-boxable.csv", "train-annotations-bbox.csv",
                 "validation-annotations-bbox.csv", "test-annotations-bbox.csv"]:
        assert (root / name).is_file()
    assert (root / "train-annotations-bbox.csv").read_bytes() == (
        mirror / "train" / "train-annotations-bbox.csv").read_bytes()
    for split, expected in GUNS.items():
        boxes = sub_csv(root, split)
        assert set(boxes["ImageID"]) == expected
        assert {"ImageID", "XMin", "XMax", "YMin", "YMax", "ClassName", "LabelName", "IsGroupOf"} <= set(boxes.columns)
        assert set(boxes["ClassName"]) <= {"Handgun", "Shotgun"}
        assert image_ids(root, split) == expected
        for image_id in expected:
            assert (root / split / f"{image_id}.jpg").read_bytes() == OBJECTS[f"{split}/{image_id}.jpg"]
    assert sorted(s3.gets) == sorted(f"{split}/{i}.jpg" for split, ids in GUNS.items() for i in ids)
    assert part_files(root) == []
    assert list(root.glob("failed-*.txt")) == []


def test_include_depiction_and_filter_file_flags_reach_the_selection(root, tmp_path, csv_host, s3) -> None:
    filter_file = tmp_path / "exclude.txt"
    filter_file.write_text(f"{HANDGUN_A}\n\n{VAL_HANDGUN}\n")
    args = downloader_args(root, csv_host, s3, "Handgun", "--include_depiction", "--filter_file", str(filter_file))
    assert main(args) == 0
    assert image_ids(root, "train") == {NUMERIC_LOOKING, HANDGUN_TWICE, HANDGUN_B, MIXED_GROUP, HANDGUN_DRAWING}
    assert image_ids(root, "validation") == set()
    assert set(sub_csv(root, "test")["ImageID"]) == {TEST_BOTH}


def test_max_images_caps_the_total_over_all_splits(root, csv_host, s3) -> None:
    assert main(downloader_args(root, csv_host, s3, "Handgun,Shotgun", "--max-images", "4")) == 0
    downloaded = {split: image_ids(root, split) for split in GUNS}
    assert sum(len(ids) for ids in downloaded.values()) == 4
    assert len(s3.gets) == 4
    for split, ids in downloaded.items():
        assert ids <= GUNS[split]
        assert set(sub_csv(root, split)["ImageID"]) == ids


def test_stats_only_fetches_csvs_and_counts_but_no_image(root, csv_host, s3, caplog) -> None:
    caplog.set_level(logging.INFO)
    assert main(downloader_args(root, csv_host, s3, "Handgun,Shotgun", "--stats_only")) == 0
    assert (root / "train-annotations-bbox.csv").is_file()
    assert s3.gets == []
    assert list(root.glob("sub-*.csv")) == []
    assert "train: 7 images, 10 boxes" in caplog.text
    assert "Handgun: 5 images, 6 boxes" in caplog.text
    assert "Shotgun: 3 images, 4 boxes" in caplog.text


def test_unknown_class_fails_before_any_annotation_download(root, csv_host, s3, caplog) -> None:
    assert main(downloader_args(root, csv_host, s3, "Handgnu,Shotgun")) == 2
    assert csv_host.requests == ["/class-descriptions-boxable.csv"]
    assert not (root / "train-annotations-bbox.csv").exists()
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'Handgnu'" in errors[0] and "'Handgun'" in errors[0]
    assert "class-descriptions-boxable.csv" in errors[0]


def test_corrupt_and_missing_images_are_listed_and_fail_the_run(root, csv_host, s3, bucket) -> None:
    assert main(downloader_args(root, csv_host, s3, "Rifle")) == 1
    assert image_ids(root, "train") == {RIFLE_GOOD}
    assert part_files(root) == []
    assert (root / "failed-train.txt").read_text().split() == sorted([RIFLE_CORRUPT, RIFLE_MISSING])
    assert s3.gets.count(f"train/{RIFLE_CORRUPT}.jpg") == 3  # retried, deleted each time
    assert s3.gets.count(f"train/{RIFLE_MISSING}.jpg") == 1  # a 404 is final

    # Once the bucket is fixed, a re-run fetches only those two and clears the list.
    for image_id in (RIFLE_CORRUPT, RIFLE_MISSING):
        bucket.put_object(Bucket=BUCKET, Key=f"train/{image_id}.jpg", Body=noisy_jpeg(7), ACL="public-read")
    s3.gets.clear()
    assert main(downloader_args(root, csv_host, s3, "Rifle")) == 0
    assert sorted(s3.gets) == sorted([f"train/{RIFLE_CORRUPT}.jpg", f"train/{RIFLE_MISSING}.jpg"])
    assert not (root / "failed-train.txt").exists()


def test_transient_corruption_and_cut_transfers_are_retried(root, csv_host, s3) -> None:
    s3.faults[f"train/{HANDGUN_A}.jpg"] = "corrupt_once"
    s3.faults[f"train/{HANDGUN_B}.jpg"] = "truncate_once"
    assert main(downloader_args(root, csv_host, s3, "Handgun")) == 0
    for image_id in (HANDGUN_A, HANDGUN_B):
        key = f"train/{image_id}.jpg"
        assert s3.gets.count(key) == 2
        assert (root / key).read_bytes() == OBJECTS[key]


def test_cut_short_annotation_csv_is_never_kept(root, csv_host, s3, caplog) -> None:
    csv_host.faults["/validation/validation-annotations-bbox.csv"] = "truncate"
    assert main(downloader_args(root, csv_host, s3)) == 1
    assert csv_host.requests.count("/validation/validation-annotations-bbox.csv") == 3
    assert not (root / "validation-annotations-bbox.csv").exists()
    assert part_files(root) == []
    assert s3.gets == []
    assert f"{csv_host.url}/validation/validation-annotations-bbox.csv" in caplog.text


def test_wrong_annotations_url_is_a_one_line_error_naming_it(root, csv_host, s3, caplog) -> None:
    args = downloader_args(root, csv_host, s3)
    args[args.index(csv_host.url)] = csv_host.url + "/2099_01"
    assert main(args) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [f"{csv_host.url}/2099_01/class-descriptions-boxable.csv: HTTP 404 File not found"]


def test_file_url_mirror_works_and_a_missing_path_fails_at_once(root, mirror, s3, caplog) -> None:
    args = ["--root", str(root), "--class_names", "Handgun", "--stats_only", "--retry_backoff", "5"]
    assert main([*args, "--annotations_url", mirror.as_uri()]) == 0
    copied = (root / "test-annotations-bbox.csv").read_bytes()
    assert copied == (mirror / "test" / "test-annotations-bbox.csv").read_bytes()
    started = time.monotonic()
    assert main([*args, "--root", str(root / "other"), "--annotations_url", (mirror / "nowhere").as_uri()]) == 1
    assert time.monotonic() - started < 5  # not retried with back-off
    assert f"{(mirror / 'nowhere').as_uri()}/class-descriptions-boxable.csv: no such file" in caplog.text


def test_missing_filter_file_is_a_usage_error(root, tmp_path, csv_host, s3) -> None:
    args = downloader_args(root, csv_host, s3, "Handgun", "--filter_file", str(tmp_path / "nope.txt"))
    assert main(args) == 2
    assert csv_host.requests == []


def test_killed_during_an_image_resumes_without_fetching_anything_twice(root, tmp_path, csv_host, s3) -> None:
    # One worker takes the images in order (split, then ImageID); the third train image stalls halfway.
    stalled = f"train/{HANDGUN_A}.jpg"
    s3.faults[stalled] = "stall"
    process = start_downloader(downloader_args(root, csv_host, s3, "Handgun,Shotgun", "--num_workers", "1"),
                               tmp_path / "first-run.log")
    try:
        wait_for(lambda: partial_file_written(root / stalled) or (root / stalled).exists(), process,
                 "the stalled image to be half written")
    finally:
        process.kill()
        process.wait()
    assert not (root / stalled).exists()

    complete = {path.relative_to(root).as_posix() for path in root.glob("*/*.jpg")}
    assert complete == {f"train/{NUMERIC_LOOKING}.jpg", f"train/{HANDGUN_TWICE}.jpg"}
    for key in complete:
        assert (root / key).read_bytes() == OBJECTS[key]  # nothing truncated under a final name

    s3.faults.clear()
    s3.release.set()
    s3.gets.clear()
    csv_host.requests.clear()
    assert main(downloader_args(root, csv_host, s3)) == 0
    assert csv_host.requests == []
    wanted = {f"{split}/{image_id}.jpg" for split, ids in GUNS.items() for image_id in ids}
    assert sorted(s3.gets) == sorted(wanted - complete)
    assert part_files(root) == []
    for key in wanted:
        assert (root / key).read_bytes() == OBJECTS[key]


def test_ctrl_c_mid_image_exits_130_and_leaves_no_partial_file(root, tmp_path, csv_host, s3) -> None:
    stalled = f"train/{HANDGUN_A}.jpg"
    s3.faults[stalled] = "stall"
    process = start_downloader(downloader_args(root, csv_host, s3, "Handgun", "--num_workers", "1"),
                               tmp_path / "run.log")
    try:
        wait_for(lambda: partial_file_written(root / stalled), process, "the stalled image to be half written")
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        s3.release.set()  # the worker is blocked in a read until the connection ends
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert part_files(root) == []
    assert not (root / stalled).exists()
    assert "run the same command again to resume" in (tmp_path / "run.log").read_text()


def test_killed_during_an_annotation_csv_resumes_from_the_missing_files(root, tmp_path, mirror, csv_host, s3) -> None:
    stalled = "/train/train-annotations-bbox.csv"
    csv_host.faults[stalled] = "stall"
    process = start_downloader(downloader_args(root, csv_host, s3), tmp_path / "first-run.log")
    try:
        wait_for(lambda: partial_file_written(root / "train-annotations-bbox.csv"), process,
                 "the train CSV to be half written")
    finally:
        process.kill()
        process.wait()
    assert (root / "class-descriptions-boxable.csv").is_file()
    assert not (root / "train-annotations-bbox.csv").exists()

    csv_host.faults.clear()
    csv_host.release.set()
    csv_host.requests.clear()
    assert main(downloader_args(root, csv_host, s3)) == 0
    assert csv_host.requests == ["/train/train-annotations-bbox.csv", "/validation/validation-annotations-bbox.csv",
                                 "/test/test-annotations-bbox.csv"]
    assert (root / "train-annotations-bbox.csv").read_bytes() == (
        mirror / "train" / "train-annotations-bbox.csv").read_bytes()
    assert part_files(root) == []
    assert image_ids(root, "train") == GUNS["train"]


def test_downloaded_folder_loads_with_the_open_images_dataset(root, csv_host, s3) -> None:
    try:
        from vision.datasets.open_images import OpenImagesDataset
    except ImportError as error:
        pytest.skip(f"vision.datasets.open_images.OpenImagesDataset is not there yet ({error})")
    assert main(downloader_args(root, csv_host, s3)) == 0
    for split, expected in GUNS.items():
        dataset = OpenImagesDataset(str(root), dataset_type=split)
        assert list(dataset.class_names) == ["BACKGROUND", "Handgun", "Shotgun"]
        assert set(dataset.ids) == expected
        table = sub_csv(root, split)
        for index in range(len(dataset)):
            image, boxes, labels = dataset[index]
            assert image.shape == (360, 480, 3)
            rows = table.loc[table["ImageID"] == dataset.ids[index]].sort_values(["XMin", "YMin"])
            pixel_corners = rows[["XMin", "YMin", "XMax", "YMax"]].to_numpy() * [480, 360, 480, 360]
            order = np.lexsort((boxes[:, 1], boxes[:, 0]))
            np.testing.assert_allclose(boxes[order], pixel_corners, rtol=1e-5)
            assert [dataset.class_names[label] for label in labels[order]] == list(rows["ClassName"])

"""Download Open Images JPEGs from an S3 bucket with unsigned requests, in a pool of threads.

An image lands at `<root>/<split>/<ImageID>.jpg` only once it is complete and decodes as a JPEG
(written under a temporary name beside it, then renamed: ``vision.utils.atomic``); one already there is
skipped, so re-running resumes, and the temporary files a killed run left are removed first.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import boto3
import cv2
import numpy as np
from botocore import UNSIGNED
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from vision.datasets.open_images_download_files import DownloadError, backoff_delay, is_name_resolution_error
from vision.utils.atomic import remove_stale_temporaries, staged_path

logger = logging.getLogger(__name__)

DEFAULT_BUCKET = "open-images-dataset"
# The public bucket lives in us-east-1; naming it keeps a user's own AWS region setting from
# sending the requests elsewhere.
DEFAULT_REGION = "us-east-1"
_CHUNK_BYTES = 1 << 16
_JPEG_MAGIC = b"\xff\xd8\xff"
# 4xx answers that can change on their own; every other 4xx (404 above all) is final.
_TRANSIENT_CLIENT_CODES = {"RequestTimeout", "SlowDown", "Throttling", "TooManyRequests", "408", "429"}


@dataclass(frozen=True)
class ImageTask:
    """One image to fetch: object key `<split>/<image_id>.jpg`, stored at the same path under root."""

    split: str
    image_id: str

    @property
    def key(self) -> str:
        return f"{self.split}/{self.image_id}.jpg"


@dataclass
class DownloadReport:
    """What `download_images` did: images fetched now, images already present, and failures.

    failed maps each image that is still missing to a one-line reason.
    """

    downloaded: list[ImageTask] = field(default_factory=list)
    skipped: list[ImageTask] = field(default_factory=list)
    failed: dict[ImageTask, str] = field(default_factory=dict)


class _BadContent(Exception):
    """The bytes received are incomplete or do not decode as a JPEG."""


class _Stopped(Exception):
    """The run is being interrupted; abandon this image."""


def make_s3_client(endpoint_url: str | None = None, max_connections: int = 10) -> BaseClient:
    """An S3 client sending unsigned (anonymous) requests, as the public bucket allows.

    endpoint_url: None for AWS, or e.g. `http://127.0.0.1:9000` for a mirror. botocore's own
    retries are switched off because `download_images` retries with its own back-off.
    """
    config = Config(
        signature_version=UNSIGNED,
        max_pool_connections=max(max_connections, 1),
        retries={"total_max_attempts": 1},
        connect_timeout=30,
        read_timeout=60,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=DEFAULT_REGION, config=config)


def is_decodable_jpeg(data: bytes) -> bool:
    """True when `data` starts like a JPEG and OpenCV can decode it."""
    if not data.startswith(_JPEG_MAGIC):
        return False
    # A reduced-size decode still walks the whole compressed stream but costs far less.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    return image is not None and image.size > 0


def _is_final(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = str(error.response.get("Error", {}).get("Code", ""))
    return 400 <= status < 500 and code not in _TRANSIENT_CLIENT_CODES


def _fetch_once(client: BaseClient, bucket: str, key: str, dest: Path, stop: threading.Event) -> None:
    """One attempt: stream the object into a temporary file beside `dest`, check it, rename it to `dest`.
    A bad or partial download is deleted before the next attempt."""
    with staged_path(dest) as part:
        response = client.get_object(Bucket=bucket, Key=key)
        expected = response.get("ContentLength")
        received = 0
        # Closing the body hands the connection back to the pool even when we stop early.
        with closing(response["Body"]) as body, open(part, "wb") as out:
            for chunk in body.iter_chunks(_CHUNK_BYTES):
                if stop.is_set():
                    raise _Stopped()
                out.write(chunk)
                received += len(chunk)
        if expected is not None and received != expected:
            raise _BadContent(f"transfer cut short: {received} of {expected} bytes")
        if not is_decodable_jpeg(Path(part).read_bytes()):
            raise _BadContent("not a decodable JPEG")


def fetch_image(
    client: BaseClient,
    bucket: str,
    task: ImageTask,
    root: Path,
    *,
    attempts: int,
    backoff_s: float,
    stop: threading.Event | None = None,
) -> str | None:
    """Fetch one image to `<root>/<task.key>`, retrying up to `attempts` times with back-off.

    A missing object (404) or another final 4xx answer is not retried. Returns None on success,
    else a one-line reason the image is still missing. Raises DownloadError at once when the S3 host
    name cannot be resolved (offline).
    """
    stop = stop or threading.Event()
    dest = root / task.key
    reason = "not attempted"
    for attempt in range(1, max(attempts, 1) + 1):
        if stop.is_set():
            return "interrupted"
        try:
            _fetch_once(client, bucket, task.key, dest, stop)
            return None
        except _Stopped:
            return "interrupted"
        except ClientError as error:
            details = error.response.get("Error", {})
            reason = f"s3://{bucket}/{task.key}: {details.get('Code', '?')} {details.get('Message', '')}".strip()
            if _is_final(error):
                return reason
        except (_BadContent, BotoCoreError, OSError) as error:
            if is_name_resolution_error(error):  # offline: every image would wait through all its retries
                raise DownloadError(f"s3://{bucket}/{task.key}: cannot resolve the S3 host name ({error}); check "
                                    "the network connection, then run the same command again") from None
            reason = f"s3://{bucket}/{task.key}: {error}"
        if attempt < attempts:
            delay = backoff_delay(attempt, backoff_s)
            logger.debug("%s; retrying in %.1f s", reason, delay)
            # Waiting on the event rather than sleeping lets an interrupt end the wait at once.
            if stop.wait(delay):
                return "interrupted"
    return reason


def download_images(
    client: BaseClient,
    bucket: str,
    root: Path,
    tasks: Iterable[ImageTask],
    *,
    num_workers: int,
    attempts: int,
    backoff_s: float,
    progress: bool = True,
) -> DownloadReport:
    """Fetch every task's image into `<root>/<split>/<ImageID>.jpg` with `num_workers` threads.

    Images already present are skipped (a file under its final name is complete); the temporary files of
    a killed run in the split folders are removed. Tasks start in
    the order given, duplicates dropped. On KeyboardInterrupt the workers stop at their next chunk,
    delete their partial files, and the interrupt is re-raised.
    """
    report = DownloadReport()
    pending = []
    for task in dict.fromkeys(tasks):
        if (root / task.key).exists():
            report.skipped.append(task)
        else:
            pending.append(task)
    for split in {task.split for task in pending}:
        (root / split).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(root / split)  # one listing of the folder, not one per image
    logger.info("%d images already present, %d to download", len(report.skipped), len(pending))
    if not pending:
        return report

    stop = threading.Event()
    started = time.monotonic()
    executor = ThreadPoolExecutor(max_workers=max(num_workers, 1), thread_name_prefix="open-images")
    try:
        futures = {
            executor.submit(fetch_image, client, bucket, task, root,
                            attempts=attempts, backoff_s=backoff_s, stop=stop): task
            for task in pending
        }
        with tqdm(total=len(pending), unit="img", desc="images", disable=not progress) as bar:
            for future in as_completed(futures):
                task = futures[future]
                try:
                    reason = future.result()
                except DownloadError:  # the network is gone: stop every download (below), say it once
                    raise
                except Exception as error:  # an unforeseen error costs one image, not the whole run
                    reason = f"s3://{bucket}/{task.key}: {type(error).__name__}: {error}"
                if reason is None:
                    report.downloaded.append(task)
                else:
                    report.failed[task] = reason
                    logger.warning("failed: %s", reason)
                    bar.set_postfix(failed=len(report.failed))
                bar.update(1)
    except BaseException:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    elapsed = time.monotonic() - started
    logger.info("downloaded %d images in %.1f s (%.1f images/s), %d failed", len(report.downloaded),
                elapsed, len(report.downloaded) / max(elapsed, 1e-9), len(report.failed))
    return report

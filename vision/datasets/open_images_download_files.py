"""Files that appear whole or not at all, and HTTP downloads of the Open Images annotation CSVs.

Every file is first written as `<name>.part` and renamed only once complete and flushed to disk,
so a file under its final name is always complete: a re-run treats it as done, and a killed run
leaves at most a `.part` file that the next attempt overwrites.
"""
from __future__ import annotations

import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tqdm import tqdm

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0
_MAX_BACKOFF_S = 60.0


class DownloadError(RuntimeError):
    """A transfer that could not be completed; the message is one line naming the URL or file."""


class _CutShort(Exception):
    """The connection closed before the announced Content-Length arrived."""


def part_path(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed to `path`."""
    return path.with_name(path.name + ".part")


def publish(part: Path, path: Path) -> None:
    """Flush `part` to disk and rename it to `path` atomically (same folder, so one rename)."""
    # fsync before the rename: otherwise a power cut could leave a complete-looking empty file.
    with open(part, "rb") as written:
        os.fsync(written.fileno())
    os.replace(part, path)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)`, then publish it as `path`; on any error no file is left."""
    part = part_path(path)
    try:
        write(part)
        publish(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def backoff_delay(attempt: int, backoff_s: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): doubling, capped at 60 s."""
    return min(backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)


def _is_permanent(error: urllib.error.HTTPError) -> bool:
    # Client errors do not heal by waiting, except "timeout" and "too many requests".
    return 400 <= error.code < 500 and error.code not in (408, 429)


def _stream_to(url: str, part: Path, label: str, progress: bool) -> None:
    """GET `url` into `part` chunk by chunk; raise _CutShort if fewer bytes come than announced."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        announced = response.headers.get("Content-Length")
        expected = int(announced) if announced is not None else None
        received = 0
        with open(part, "wb") as out, tqdm(
            total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress
        ) as bar:
            # read1 hands over what has arrived instead of waiting for a full chunk.
            read = getattr(response, "read1", response.read)
            while chunk := read(_CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body silently when the connection drops, so count the bytes.
    if expected is not None and received != expected:
        raise _CutShort(f"transfer cut short: {received} of {expected} bytes")


def fetch_file(url: str, path: Path, *, attempts: int, backoff_s: float, progress: bool = True) -> bool:
    """Download `url` to `path` unless `path` already exists; returns True when it downloaded.

    The body is streamed to `<path>.part` (never held in memory) and renamed when complete.
    Network errors, 5xx answers and cut-short transfers are retried `attempts` times in all, with
    doubling back-off from `backoff_s`; 4xx answers and missing file:// paths are not.
    Raises DownloadError (one line with the URL) when it gives up; no partial file is left then.
    """
    if path.exists():
        logger.info("%s is already complete, not downloading it again", path)
        return False
    logger.info("downloading %s to %s", url, path)
    part = part_path(path)
    last_error = ""
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            _stream_to(url, part, path.name, progress)
            publish(part, path)
            return True
        except urllib.error.HTTPError as error:
            part.unlink(missing_ok=True)
            if _is_permanent(error):
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
            last_error = f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, http.client.HTTPException, OSError, _CutShort) as error:
            part.unlink(missing_ok=True)
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            if isinstance(error, urllib.error.URLError) and isinstance(reason, FileNotFoundError):
                raise DownloadError(f"{url}: no such file") from None  # a file:// path will not appear
            last_error = str(reason)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        if attempt < attempts:
            delay = backoff_delay(attempt, backoff_s)
            logger.warning("%s: attempt %d failed (%s); retrying in %.1f s", url, attempt, last_error, delay)
            time.sleep(delay)
    raise DownloadError(f"{url}: giving up after {attempts} attempts ({last_error})")

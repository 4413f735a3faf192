"""Files that appear whole or not at all, and HTTP downloads of the Open Images annotation CSVs.

Every file is first written under a temporary name beside it (``vision.utils.atomic``: ``.<name>.tmp-<random>``)
and renamed only once complete and flushed to disk, so a file under its final name is always complete: a
re-run treats it as done. A killed run can leave a temporary file behind; the next attempt at that file
removes it before it starts.
"""
from __future__ import annotations

import http.client
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from vision.utils.atomic import remove_stale_temporaries, staged_path

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0
_MAX_BACKOFF_S = 60.0


class DownloadError(RuntimeError):
    """A transfer that could not be completed; the message is one line naming the URL or file."""


class _CutShort(Exception):
    """The connection closed before the announced Content-Length arrived."""


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)`, then publish it as `path` (flushed, then one rename); on any error,
    Ctrl-C included, no file is left and `path` stays as it was. A killed run's temporary file of `path`
    is removed first. Raises WriteError (an OSError) when the file cannot be created or renamed."""
    remove_stale_temporaries(path.parent, path.name)
    with staged_path(path) as temporary:
        write(Path(temporary))


def backoff_delay(attempt: int, backoff_s: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): doubling, capped at 60 s."""
    return min(backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)


def is_name_resolution_error(error: BaseException) -> bool:
    """True when ``error`` comes from a host name that cannot be resolved (``socket.gaierror``: offline, or a
    mistyped host), found through the exceptions urllib, urllib3 and botocore wrap it in. Waiting does not
    bring a name back the way it heals a dropped connection, so such errors are not retried."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == "NameResolutionError":
            return True
        kwargs = getattr(current, "kwargs", None)  # botocore keeps the underlying error there
        pending += [getattr(current, "reason", None), current.__cause__, current.__context__,
                    kwargs.get("error") if isinstance(kwargs, dict) else None]
    return False


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

    The body is streamed to a temporary file beside `path` (never held in memory) and renamed when complete.
    Network errors, 5xx answers and cut-short transfers are retried `attempts` times in all, with
    doubling back-off from `backoff_s`; 4xx answers, missing file:// paths and host names that cannot be
    resolved (offline) are not.
    Raises DownloadError (one line with the URL) when it gives up; no partial file is left then.
    """
    if path.exists():
        logger.info("%s is already complete, not downloading it again", path)
        return False
    logger.info("downloading %s to %s", url, path)
    remove_stale_temporaries(path.parent, path.name)
    last_error = ""
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            with staged_path(path) as part:  # a failed attempt's partial file is removed here
                _stream_to(url, Path(part), path.name, progress)
            return True
        except urllib.error.HTTPError as error:
            if _is_permanent(error):
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
            last_error = f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, http.client.HTTPException, OSError, _CutShort) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            if isinstance(error, urllib.error.URLError) and isinstance(reason, FileNotFoundError):
                raise DownloadError(f"{url}: no such file") from None  # a file:// path will not appear
            if is_name_resolution_error(error):
                host = urllib.parse.urlsplit(url).hostname
                raise DownloadError(f"{url}: cannot resolve the host name {host} ({reason}); check the network "
                                    "connection (offline?) and the URL") from None
            last_error = str(reason)
        if attempt < attempts:
            delay = backoff_delay(attempt, backoff_s)
            logger.warning("%s: attempt %d failed (%s); retrying in %.1f s", url, attempt, last_error, delay)
            time.sleep(delay)
    raise DownloadError(f"{url}: giving up after {attempts} attempts ({last_error})")

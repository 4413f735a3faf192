"""The one way this project writes a file: under a temporary name in the same folder, then renamed.

A reader, a crash, a full disk or Ctrl-C never leaves a partial file under the final name: either the
previous file stays or the new one is complete. Checkpoints, sidecars, label files, downloads, ONNX
exports, reports, generated data and the live demo's video all go through here.

- :func:`staged_path` yields a temporary path for code that writes a file itself (``torch.hub``'s
  downloader, ``onnx.save``, ``cv2.VideoWriter``); :func:`atomic_write` yields an open stream;
  :func:`write_text`, :func:`write_bytes` and :func:`save_torch` write a whole value, :func:`append_text`
  adds to a small text file.
- :class:`StagedFiles` publishes several files together (an export and its side files).
- Temporary names are ``.<name>.tmp-<random>``: hidden, unique to one writer, and found again by
  :func:`remove_stale_temporaries` after a killed process.
- The final file gets the usual permissions (0666 less the umask), not a temporary file's 0600.
- An OSError while writing (no space left, read-only folder, permission denied) becomes one
  :class:`WriteError` line naming the final path; the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
import tempfile
from typing import IO, Any, Iterator, List, Optional, Sequence

TEMPORARY_MARK = ".tmp-"


class WriteError(OSError):
    """A file that could not be written; the message names the final path and the cause, in one line."""


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_pattern(path: str | os.PathLike) -> str:
    """The glob pattern of the temporary files :func:`staged_path` makes for ``path``."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(glob.escape(folder), f".{glob.escape(name)}{TEMPORARY_MARK}*")


def describe_os_error(error: OSError, path: str | os.PathLike) -> str:
    """``"no space left on device writing <path>"``-style text for an OSError met while writing ``path``."""
    path = os.fspath(path)
    if error.errno == errno.ENOSPC:
        return f"no space left on device writing {path}"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied writing {path}"
    if error.errno == errno.EROFS:
        return f"read-only file system: cannot write {path}"
    if error.errno == errno.EISDIR or os.path.isdir(path):
        return f"{path}: is a folder, not a file"
    return f"cannot write {path} ({error.strerror or error})"


def _os_error_reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on device"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.EROFS:
        return "read-only file system"
    return error.strerror or str(error)


def check_writable(path: str | os.PathLike, folder: bool = False, flag: Optional[str] = None) -> None:
    """Check, before any work, that ``path`` can be written: a file (``folder`` False) that is not a folder,
    or a folder (``folder`` True) that is not a file, whose nearest existing folder lets a file be created.
    Creates nothing that stays (a probe file is made and removed). Raises :class:`WriteError` in one line
    naming ``flag`` (e.g. ``"--eval_dir"``) and ``path``."""
    shown = f"{flag} {os.fspath(path)}" if flag else os.fspath(path)
    final = os.path.abspath(os.fspath(path))
    if folder and os.path.exists(final) and not os.path.isdir(final):
        raise WriteError(f"{shown}: is a file, not a folder")
    if not folder and os.path.isdir(final):
        raise WriteError(f"{shown}: is a folder, not a file")
    existing = final if folder else os.path.dirname(final)
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WriteError(f"{shown}: cannot be created, {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{os.path.basename(final)}{TEMPORARY_MARK}", dir=existing)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise WriteError(f"{shown}: cannot write there ({_os_error_reason(error)})") from None


def _make_parent(final: str) -> str:
    folder = os.path.dirname(final)
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise WriteError(f"cannot write {final}: a part of the path is a file, not a folder") from None
    except OSError as error:
        raise WriteError(describe_os_error(error, final)) from None
    return folder


@contextlib.contextmanager
def staged_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; when the body returns, the file written there is flushed to
    disk and renamed to ``path``. When the body raises (Ctrl-C included), the temporary file is removed and
    ``path`` is left as it was; the body's exceptions pass through unchanged. Parent folders are created;
    an OSError of creating, flushing or renaming becomes a :class:`WriteError`."""
    final = os.path.abspath(os.fspath(path))
    if os.path.isdir(final):
        raise WriteError(f"{os.fspath(path)}: is a folder, not a file")
    folder = _make_parent(final)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(final)}{TEMPORARY_MARK}", dir=folder)
        os.close(handle)
    except OSError as error:
        raise WriteError(describe_os_error(error, os.fspath(path))) from None
    try:
        yield temporary
        try:
            if fsync and os.path.isfile(temporary):
                with open(temporary, "rb") as written:
                    os.fsync(written.fileno())  # else a power cut could leave a complete-looking empty file
            os.chmod(temporary, 0o666 & ~current_umask())
            os.replace(temporary, final)
        except OSError as error:
            raise WriteError(describe_os_error(error, os.fspath(path))) from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: Optional[str] = "utf-8",
                 fsync: bool = True) -> Iterator[IO]:
    """Yield a stream open for writing (``mode`` ``"w"`` or ``"wb"``); see :func:`staged_path`. An OSError
    while the body writes (a full disk) becomes a :class:`WriteError` naming ``path``. ``fsync`` False skips
    the flush to disk, for the many small files of a data set written into a new folder."""
    with staged_path(path, fsync=fsync) as temporary:
        try:
            with open(temporary, mode, encoding=None if "b" in mode else encoding) as stream:
                yield stream
        except OSError as error:
            if isinstance(error, WriteError):
                raise
            raise WriteError(describe_os_error(error, os.fspath(path))) from None


def write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path`` as a string."""
    with atomic_write(path, "w", fsync=fsync) as stream:
        stream.write(text)
    return os.fspath(path)


def write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> str:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a string."""
    with atomic_write(path, "wb", fsync=fsync) as stream:
        stream.write(data)
    return os.fspath(path)


def append_text(path: str | os.PathLike, text: str) -> str:
    """Append ``text`` (UTF-8) to the small text file ``path`` (created when missing) atomically: the whole
    file is written again under a temporary name, so a full disk leaves the previous lines intact and never
    half a line; the error is a :class:`WriteError` naming ``path``. For logs of a few thousand lines, such
    as a run's history; returns ``path`` as a string."""
    try:
        with open(path, encoding="utf-8") as stream:
            previous = stream.read()
    except FileNotFoundError:
        previous = ""
    return write_text(path, previous + text)


def save_torch(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save(obj)`` to ``path`` atomically. The bytes are made in memory first: written by torch's
    own C++ writer, a full disk would surface as an unrelated ``inline_container`` RuntimeError, while here
    it is a :class:`WriteError` saying so."""
    import torch  # only the callers that save tensors pay for importing torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getbuffer())


class StagedFiles:
    """Several files written under temporary names and published together: ``path(final)`` gives the
    temporary path of one final path, ``publish()`` renames them all (each rename atomic), and whatever was
    not published is removed on exit, so no final name ever holds a partial file.

    ``publish(targets)`` may rename to other final paths than the staged ones (an export that failed its
    check is kept under another name)."""

    def __init__(self, final_paths: Sequence[str | os.PathLike]):
        self.finals = [os.path.abspath(os.fspath(path)) for path in final_paths]
        self.temporaries: List[str] = []
        for final in self.finals:
            folder = _make_parent(final)
            handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(final)}{TEMPORARY_MARK}", dir=folder)
            os.close(handle)
            self.temporaries.append(temporary)

    def path(self, final_path: str | os.PathLike) -> str:
        return self.temporaries[self.finals.index(os.path.abspath(os.fspath(final_path)))]

    def publish(self, targets: Optional[Sequence[str | os.PathLike]] = None) -> None:
        targets = [os.fspath(target) for target in targets] if targets is not None else self.finals
        mask = current_umask()
        try:
            for temporary, target in zip(self.temporaries, targets):
                if os.path.exists(temporary):
                    os.chmod(temporary, 0o666 & ~mask)
                    os.replace(temporary, target)
        except OSError as error:
            raise WriteError(describe_os_error(error, target)) from None

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, *exc_info) -> None:
        for temporary in self.temporaries:
            if os.path.exists(temporary):
                os.remove(temporary)


def remove_stale_temporaries(folder: str | os.PathLike, name: Optional[str] = None) -> List[str]:
    """Remove the temporary files a killed writer left in ``folder`` (those of ``name`` only, when given);
    returns their paths. Call it before a run starts writing there."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    pattern = (temporary_pattern(os.path.join(folder, name)) if name
               else os.path.join(glob.escape(folder), f".*{TEMPORARY_MARK}*"))
    removed = []
    for path in sorted(glob.glob(pattern)):
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed

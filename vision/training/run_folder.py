"""The checkpoint folder of a training run, taken before anything is written there (``train_ssd.py``).

- A folder that holds another run (its ``last.pth`` or ``history.jsonl``) is refused, with the command that
  resumes it, unless this run resumes that folder's own ``last.pth`` or is told to replace it
  (``--overwrite``): a new run would otherwise replace the old run's only resume state and append a second
  "epoch 0" to its history.
- A folder that is a file, cannot be created or cannot be written is a one-line error before any data is
  read.
- While a run writes there it holds a lock: an ``fcntl`` lock on ``<folder>/.train_ssd.lock``, which the
  system releases when the process ends however it ends, so a second run into the same folder is refused
  instead of interleaving its epochs with the first's. The file is removed when the run ends. (Where
  ``fcntl`` is missing, on Windows, there is no lock; the other checks apply.)
- :func:`resume_point` says, after an interruption or a failed save, which checkpoint resumes the run.
"""
from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from typing import IO, Optional, Tuple

import torch

from vision.training import checkpoints
from vision.utils.atomic import WriteError, check_writable

try:
    import fcntl
except ImportError:  # Windows has no fcntl; there the folder is checked but not locked
    fcntl = None

HISTORY = "history.jsonl"
LOCK_NAME = ".train_ssd.lock"


class RunFolderError(ValueError):
    """A checkpoint folder this run may not write to; the message names it and says what to do."""


def saved_epoch(path: Optional[str]) -> Optional[int]:
    """The last finished epoch a training checkpoint (``last.pth``) records; None for a bare state_dict, a
    missing file or one that cannot be read. Memory-mapped, so a large checkpoint is not read whole."""
    if not path or not os.path.isfile(path):
        return None
    checkpoint = None
    for mmap in (True, False):  # mmap needs torch's zip format; the older format is read whole
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception:  # truncated, not a checkpoint at all, or not mappable
            continue
    return int(checkpoint["epoch"]) if checkpoints.is_training_checkpoint(checkpoint) else None


def _same_file(first: Optional[str], second: str) -> bool:
    try:
        return bool(first) and os.path.samefile(first, second)
    except OSError:
        return False


def _stat(path: str) -> Optional[Tuple[int, int, int]]:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_mtime_ns


@dataclass
class RunFolder:
    """A checkpoint folder taken by one run (:func:`take_run_folder`). ``replaces_run``: it held another
    run, replaced by ``--overwrite``; ``last_at_start``: ``last.pth`` as it was when the run took the
    folder (device, inode, mtime), to tell this run's checkpoint from an older one."""

    folder: str
    resume: Optional[str]
    replaces_run: bool
    last_at_start: Optional[Tuple[int, int, int]]
    _lock: Optional[IO] = None

    @property
    def last_path(self) -> str:
        return os.path.join(self.folder, checkpoints.LAST_CHECKPOINT)

    def start_history(self) -> None:
        """With ``--overwrite`` of another run: its ``history.jsonl`` is removed, so the new run's history
        starts at its own first epoch (call it once the run is set up, just before it trains)."""
        if self.replaces_run:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.folder, HISTORY))

    def resume_point(self) -> Optional[Tuple[str, int]]:
        """``(checkpoint, last finished epoch)`` that resumes this run now: the folder's ``last.pth`` when
        this run wrote it or resumed from it, else the ``--resume`` training checkpoint it started from;
        None when neither exists (nothing finished yet)."""
        now = _stat(self.last_path)
        # Unchanged since the start, a replaced run's last.pth is still that run's.
        if now is not None and (now != self.last_at_start or not self.replaces_run):
            epoch = saved_epoch(self.last_path)
            if epoch is not None:
                return self.last_path, epoch
        epoch = saved_epoch(self.resume)
        return (self.resume, epoch) if epoch is not None else None

    def release(self) -> None:
        """Remove the lock file and release the lock (closing the file releases it)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.folder, LOCK_NAME))
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _lock(folder: str) -> Optional[IO]:
    """Hold the folder's lock; RunFolderError when another process holds it or the lock file cannot be
    created."""
    if fcntl is None:
        return None
    path = os.path.join(folder, LOCK_NAME)
    while True:
        try:
            handle = open(path, "a")  # creates it empty; nothing is written to it
        except OSError as error:
            raise RunFolderError(f"--checkpoint_folder {folder}: cannot write there "
                                 f"({error.strerror or error})") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunFolderError(f"--checkpoint_folder {folder}: another training run is writing to it (it "
                                     f"holds {path}); wait for it to end, or choose another folder") from None
            raise RunFolderError(f"--checkpoint_folder {folder}: cannot lock {path} "
                                 f"({error.strerror or error})") from None
        # The run that held the lock removes the file as it releases it: a lock on a removed file is no lock.
        try:
            if os.path.samestat(os.fstat(handle.fileno()), os.stat(path)):
                return handle
        except FileNotFoundError:
            pass
        handle.close()


def take_run_folder(folder: str, resume: Optional[str] = None, overwrite: bool = False) -> RunFolder:
    """Check and lock ``folder`` for a run (see the module docstring); returns the :class:`RunFolder`, to
    release when the run ends (it is a context manager). ``resume``: the run's ``--resume`` file;
    ``overwrite``: ``--overwrite``. Raises RunFolderError (a ValueError) with one line naming the folder;
    nothing is written then, and a folder created for the lock is removed."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise RunFolderError(f"--checkpoint_folder {folder}: is a file, not a folder; give a folder path")
    try:
        check_writable(folder, folder=True, flag="--checkpoint_folder")
    except WriteError as error:
        raise RunFolderError(str(error)) from None
    created = not os.path.exists(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise RunFolderError(f"--checkpoint_folder {folder}: cannot be created ({error.strerror or error})") from None
    taken = None
    try:
        taken = RunFolder(folder, resume, False, None, _lock(folder))
        last = taken.last_path
        holds_run = os.path.exists(last) or os.path.exists(os.path.join(folder, HISTORY))
        continues = _same_file(resume, last)
        if holds_run and not continues and not overwrite:
            epoch = saved_epoch(last)
            what = f"last.pth after epoch {epoch}" if epoch is not None else "its last.pth or history.jsonl"
            raise RunFolderError(f"--checkpoint_folder {folder}: holds another run ({what}); continue it with "
                                 f"--resume {last}, pass --overwrite to replace it, or choose another folder")
        taken.replaces_run = holds_run and not continues
        taken.last_at_start = _stat(last)
        return taken
    except BaseException:
        if taken is not None:
            taken.release()
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise

"""What every test of a user's mistake checks, beside the exit status and the message: no traceback, no file
the user had changed, no temporary file of the atomic writer left behind."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

from vision.utils.atomic import TEMPORARY_MARK


def file_hashes(*paths: Path) -> Dict[str, str]:
    """sha256 of every file at or under ``paths`` (missing paths give nothing), by path."""
    hashes = {}
    for path in map(Path, paths):
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
        for file in files:
            hashes[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return hashes


def temporaries(*folders: Path) -> List[str]:
    """The atomic writer's temporary files (``.<name>.tmp-*``) at or under ``folders``."""
    found = []
    for folder in map(Path, folders):
        if folder.is_dir():
            found += [str(p) for p in folder.rglob(f".*{TEMPORARY_MARK}*")]
    return found


def run_main(main: Callable[[List[str]], int], argv: Sequence, capsys) -> Tuple[int, str, str]:
    """``main(argv)`` in-process as the script runs it: an argparse error is its exit status 2. Returns
    ``(status, stdout, stderr)`` and fails the test on a traceback in either stream."""
    try:
        code = main([str(value) for value in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out and "Traceback" not in err, out + err
    return code, out, err


def error_lines(err: str) -> List[str]:
    """The lines of ``err`` that report an error (``error:`` anywhere in them)."""
    return [line for line in err.splitlines() if "error:" in line]

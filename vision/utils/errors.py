"""Turning an exception into the one line a user is shown."""
from __future__ import annotations


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of ``error``'s message (its type name when it has none), at most ``limit`` characters."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."

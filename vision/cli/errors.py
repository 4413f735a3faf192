"""How the scripts report a user's mistake: one line on stderr, no traceback, a non-zero exit status."""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

Args = TypeVar("Args")


def run_reporting_errors(run: Callable[[Args], int], args: Args) -> int:
    """``run(args)``; a ValueError or OSError (missing or bad file, wrong label file, ...) becomes
    ``error: <message>`` on stderr and exit status 1."""
    try:
        return run(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

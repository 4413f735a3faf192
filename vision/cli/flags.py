"""Flag value types shared by the scripts."""
from __future__ import annotations

import argparse

TRUE_WORDS = ("true", "t", "yes", "y", "1", "on")
FALSE_WORDS = ("false", "f", "no", "n", "0", "off")


def str2bool(text: str | bool) -> bool:
    """A boolean flag value, as the original's ``str2bool`` flags (``--use_cuda``, ``--use_2007_metric``)
    take them: true/false, t/f, yes/no, y/n, 1/0, on/off in any case. Anything else is an argparse error
    (a one-line usage message), not a silent False as in the original."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, yes/no, 1/0), got {text!r}")

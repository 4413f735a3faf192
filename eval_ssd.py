"""Evaluate a trained SSD (see ``python eval_ssd.py --help`` and vision/cli/eval_ssd.py)."""

import sys

from vision.cli.eval_ssd import main

if __name__ == "__main__":
    sys.exit(main())

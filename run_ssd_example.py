"""Detect objects in images and draw them (see ``python run_ssd_example.py --help`` and
vision/cli/run_ssd_example.py)."""

import sys

from vision.cli.run_ssd_example import main

if __name__ == "__main__":
    sys.exit(main())

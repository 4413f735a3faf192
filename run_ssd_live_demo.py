"""Detect objects live in a camera, video file or stream (see ``python run_ssd_live_demo.py --help`` and
vision/cli/run_ssd_live_demo.py)."""

import sys

from vision.cli.run_ssd_live_demo import main

if __name__ == "__main__":
    sys.exit(main())

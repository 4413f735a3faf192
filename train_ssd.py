"""Train an SSD / SSD-Lite detector. See ``python train_ssd.py --help`` and the README."""
import sys

from vision.cli.train_ssd import main

if __name__ == "__main__":
    sys.exit(main())

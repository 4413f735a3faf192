"""``python -m vision.zoo``: the command lives in :mod:`vision.cli.zoo`."""
import sys

from vision.cli.zoo import main

sys.exit(main())

import sys

from vision.cli.synthetic_dataset import main

sys.exit(main())

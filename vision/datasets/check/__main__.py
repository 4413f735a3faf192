import sys

from vision.cli.check_dataset import main

sys.exit(main())

import sys

from vision.cli.convert_dataset import main

sys.exit(main())

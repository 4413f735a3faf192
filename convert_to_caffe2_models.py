"""Export a trained SSD to ONNX (and Caffe2 when installed) and check the file (see
``python convert_to_caffe2_models.py --help`` and vision/cli/convert_to_caffe2_models.py)."""

import sys

from vision.cli.convert_to_caffe2_models import main

if __name__ == "__main__":
    sys.exit(main())

"""SSD / SSD-Lite object detection. Importing this package does not import torch (the ONNX predictor relies on that)."""

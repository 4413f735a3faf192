"""Running a trained or exported detector: what ``run_ssd_example.py``, ``run_ssd_live_demo.py`` and
Python code call.

- :mod:`vision.runtime.detector`: :func:`~vision.runtime.detector.load_detector` gives a
  :class:`~vision.runtime.detector.Detector`, a ``.pth`` (PyTorch) or an ``.onnx`` (ONNX Runtime) behind one
  ``detect()``.
- :mod:`vision.runtime.images`: image files from paths, folders and patterns; writing a result image.
- :mod:`vision.runtime.video`: cameras, files and streams, a background frame reader, window and video
  file sinks, and the detect-draw-sink loop.

Importing this package imports neither torch nor onnxruntime; each backend is imported when it is used.
"""

"""Quieting OpenCV's own log where the project reports the outcome itself, in one line."""
from __future__ import annotations

import contextlib

import cv2


@contextlib.contextmanager
def quiet_opencv(level: int = cv2.utils.logging.LOG_LEVEL_SILENT):
    """Set OpenCV's log level to ``level`` inside the block, restoring the previous one after."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(level)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)

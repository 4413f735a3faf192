"""Drawing detections and status text on BGR images with OpenCV. No torch import.

Boxes come in pixels, corner form ``[x1, y1, x2, y2]`` (what the predictors return); tensors and
arrays are both accepted.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

Color = Tuple[int, int, int]

FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(label: int) -> Color:
    """A fixed, well-separated BGR colour for class ``label`` (the same in every frame and run)."""
    hue = (int(label) * 47) % 180  # 47 is coprime with 180, so neighbouring classes get distant hues
    pixel = np.uint8([[[hue, 220, 255]]])
    blue, green, red = cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0]
    return int(blue), int(green), int(red)


def detection_caption(label: int, prob: float, class_names: Sequence[str]) -> str:
    """``"<name>: 0.87"``; the index itself when ``class_names`` has no such entry."""
    name = class_names[label] if 0 <= label < len(class_names) else str(label)
    return f"{name}: {prob:.2f}"


def draw_detections(image: np.ndarray, boxes, labels, probs, class_names: Sequence[str],
                    thickness: int | None = None) -> np.ndarray:
    """Draw each box with a filled caption above it, in place.

    image: uint8 ``(H, W, 3)`` BGR; boxes ``(K, 4)`` pixels corner form; labels ``(K,)`` class indexes;
    probs ``(K,)`` scores. Returns ``image``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=np.float32).reshape(-1)
    height, width = image.shape[:2]
    line = thickness or max(1, round(max(height, width) / 300))
    font_scale = max(0.4, max(height, width) / 1000)
    for box, label, prob in zip(boxes, labels, probs):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        color = class_color(int(label))
        cv2.rectangle(image, (x1, y1), (x2, y2), color, line)
        caption = detection_caption(int(label), float(prob), class_names)
        draw_label(image, caption, (x1, y1), color, font_scale)
    return image


def draw_label(image: np.ndarray, text: str, corner: Tuple[int, int], color: Color, font_scale: float = 0.5) -> None:
    """``text`` on a filled ``color`` band whose bottom-left is ``corner``, moved inside the image when it
    would leave it (a box at the top edge gets its caption inside the box)."""
    height, width = image.shape[:2]
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, font_scale, 1)
    band_height = text_height + baseline + 2
    x = min(max(0, corner[0]), max(0, width - text_width - 2))
    y = corner[1] if corner[1] - band_height >= 0 else min(height, corner[1] + band_height)
    cv2.rectangle(image, (x, y - band_height), (x + text_width + 2, y), color, cv2.FILLED)
    # Black or white text, whichever reads better on the band.
    text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, y - baseline - 1), FONT, font_scale, text_color, 1, cv2.LINE_AA)


def draw_status(image: np.ndarray, text: str) -> np.ndarray:
    """Status text (e.g. ``"FPS: 12.3"``) in the top-left corner, white on black so it reads on any frame."""
    height, width = image.shape[:2]
    font_scale = max(0.5, max(height, width) / 900)
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, font_scale, 2)
    cv2.rectangle(image, (0, 0), (text_width + 10, text_height + baseline + 10), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (5, text_height + 5), FONT, font_scale, (255, 255, 255), 2, cv2.LINE_AA)
    return image

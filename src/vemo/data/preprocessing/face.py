"""Locating the face in a clip and cropping it to a fixed-size grayscale square.

Why OpenCV's Haar cascade: it ships inside opencv-python-headless 4.x (no model download, so vemo
works offline), finds frontal faces like CREMA-D's in ~6 ms on a 160-pixel-wide frame, and needs no
extra dependency. YuNet is more accurate but needs an .onnx file no package ships; mediapipe ships no
models. OpenCV 5 dropped CascadeClassifier, hence the `<5` pin.

Why detect on a few frames only: faces in acted clips barely move, so detecting on `detect_frames`
evenly spaced frames and interpolating the box between them is as good as per-frame detection at a
fraction of the cost. When no frame yields a face, the clip falls back to a centre crop (the centred
square of the picture's shorter side) and the manifest records it, so a user sees how many clips were
cropped blindly.

Why a second, padded try: a picture that is all face (a cropped dataset, a close-up) leaves the
cascade no context and it misses the face; `_detect_in_context` gives the context back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

DETECT_WIDTH = 160  # frames are downscaled to this width for detection
CONTEXT_PAD = 0.5  # second try: border added on each side, as a fraction of the picture's longer side


@lru_cache(maxsize=1)
def haar_cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its Haar cascade from {path}")
    return cascade


def _detect(gray: np.ndarray, min_fraction: int) -> list[np.ndarray]:
    """Haar detections at least 1/`min_fraction` of the shorter side, full-resolution (x, y, w, h)."""
    h, w = gray.shape
    scale = min(1.0, DETECT_WIDTH / w)
    small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    side = min(small.shape)
    found = haar_cascade().detectMultiScale(small, 1.1, 4, minSize=(max(16, side // min_fraction),) * 2)
    return [np.array(b, dtype=np.float64) / scale for b in found]


def _detect_in_context(gray: np.ndarray) -> list[np.ndarray]:
    """Faces that fill the picture: a face crop (FER2013, a cropped dataset) or a close-up.

    The cascade looks for a face inside its window with some context around it; a face whose box is
    the whole image has none, so it is missed (on FER2013's 48x48 crops, ~70% of faces). Padding the
    picture on every side by CONTEXT_PAD of its longer side, edges replicated, gives the context back
    (FER2013 faces detected: ~28% -> ~77%, `bench/face_context.py`), and the box found is nearly the
    image itself, as FER2013 frames a face. The padded copy is searched for faces of at least a quarter
    of its shorter side (half the picture's side for a square picture): smaller ones were not hidden by
    the lack of context. A box must be centred inside the picture (not a face made of replicated
    border) and is clipped to it, so a reported box is always inside the image."""
    pad = round(CONTEXT_PAD * max(gray.shape))
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    up = max(1.0, DETECT_WIDTH / padded.shape[1])  # a small crop is enlarged: the cascade misses small faces
    if up > 1:
        padded = cv2.resize(padded, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
    h, w = gray.shape
    inside = []
    for x, y, bw, bh in (b / up - np.array([pad, pad, 0, 0]) for b in _detect(padded, min_fraction=4)):
        if 0 <= x + bw / 2 < w and 0 <= y + bh / 2 < h:
            x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
            inside.append(np.array([x0, y0, x1 - x0, y1 - y0]))
    return inside


def detect_all(gray: np.ndarray, min_fraction: int = 6) -> list[np.ndarray]:
    """All frontal faces at least 1/`min_fraction` of the shorter side, as (x, y, w, h) boxes in
    full-resolution pixels, largest first. Detection runs on a copy downscaled to DETECT_WIDTH; when it
    finds nothing, once more on a padded copy, for a face that fills the picture (`_detect_in_context`):
    a picture without a face costs two passes (about twice the detection time of one with a face)."""
    boxes = _detect(gray, min_fraction) or _detect_in_context(gray)
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def detect_largest(gray: np.ndarray) -> np.ndarray | None:
    """Largest frontal face (at least a fifth of the shorter side) in full-resolution pixels, or None."""
    boxes = detect_all(gray, min_fraction=5)
    return boxes[0] if boxes else None


def center_box(shape: tuple[int, int], fraction: float = 1.0) -> np.ndarray:
    """A centred square covering `fraction` of the shorter side: the fallback when no face is found.

    The whole shorter side by default: where even the padded try finds nothing, the picture is most
    often a face crop the cascade cannot read (a turned or covered face in a cropped dataset), and for a
    crop that is FER2013's own framing. Zooming in costs accuracy (the default model on 1,000 validation
    stills: 0.709 at 1.0, 0.679 at 0.9, 0.655 at 0.8; `bench/fallback_crop.py`)."""
    h, w = shape
    side = fraction * min(h, w)
    return np.array([(w - side) / 2, (h - side) / 2, side, side])


@dataclass
class FaceTrack:
    boxes: np.ndarray  # (T, 4) x, y, w, h per sampled frame
    detected: bool  # False: centre-crop fallback


def track_faces(frames: list[np.ndarray], method: str = "haar", detect_frames: int = 3) -> FaceTrack:
    """One box per frame: detections on a few frames, linearly interpolated between them."""
    n = len(frames)
    if method == "center":
        return FaceTrack(np.tile(center_box(frames[0].shape), (n, 1)), False)
    if method != "haar":
        raise ValueError(f"unknown face method {method!r} (use 'haar' or 'center')")
    probe = np.unique(np.linspace(0, n - 1, max(1, min(detect_frames, n))).round().astype(int))
    hits = [(i, box) for i in probe if (box := detect_largest(frames[i])) is not None]
    if not hits:
        return FaceTrack(np.tile(center_box(frames[0].shape), (n, 1)), False)
    at = np.array([i for i, _ in hits], dtype=np.float64)
    known = np.stack([b for _, b in hits])
    boxes = np.stack([np.interp(np.arange(n), at, known[:, k]) for k in range(4)], axis=1)
    return FaceTrack(boxes, True)


def crop_square(gray: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Square crop around `box` grown by `margin`, resized to size x size; pads by edge replication."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    H, W = gray.shape
    pad = max(0, -x0, -y0, x0 + s - W, y0 + s - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    patch = gray[y0 : y0 + s, x0 : x0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)

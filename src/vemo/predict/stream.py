"""Streaming a video (or a webcam) into face-cropped windows of T frames, with bounded memory.

A video is read once, frame by frame. Frames are *sampled* at T / window_s per second (the rate at
which a training clip of `window_s` seconds yields its T frames), the face is detected on each sampled
frame (downscaled, Haar), detections are linked into tracks by overlap, and every `hop_s` seconds each
live track emits the window of its last T crops. Only those T crops per track are kept, so a
10-minute video needs no more memory than a 10-second one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from vemo.data.preprocessing.face import center_box, crop_square, detect_all
from vemo.data.sources.video import iter_video, luma, upright_turns


@dataclass
class Frame:
    index: int
    time: float
    gray: np.ndarray
    rgb: np.ndarray | None = None  # only when an annotated video is written


def video_frames(path: str | Path, want_rgb: bool = False, facts: dict | None = None) -> Iterator[Frame]:
    """Decode a video file frame by frame (luma plane; RGB too if asked), upright (`vemo.data.sources.video.luma`).
    Raises ClipError on bad files; a file damaged part-way ends the stream at the damage (what decoded
    is kept, and `facts`, when given, receives what `truncation_reason` needs to say so)."""
    for i, (frame, t) in enumerate(iter_video(path, facts)):
        gray, turns = luma(frame), upright_turns(frame)
        rgb = frame.to_ndarray(format="rgb24") if want_rgb else None
        if rgb is not None and turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, turns))
        yield Frame(i, t, gray, rgb)


def video_fps(path: str | Path, default: float = 30.0) -> float:
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else default
    except (av.error.FFmpegError, ValueError, OSError, IndexError):
        return default


def webcam_frames(device: int, want_rgb: bool = False, max_seconds: float = 0.0) -> Iterator[Frame]:
    """Frames from a camera through OpenCV, until it stops (or `max_seconds`, 0 = no limit)."""
    import time

    import cv2

    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open webcam {device}")
    start, i = time.time(), 0
    try:
        while True:
            ok, bgr = cap.read()
            t = time.time() - start
            if not ok or (max_seconds and t > max_seconds):
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if want_rgb else None
            yield Frame(i, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), rgb)
            i += 1
    finally:
        cap.release()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


@dataclass
class Track:
    """One face over time: its last box and its last T crops (None where the face was not found)."""

    id: int
    box: np.ndarray
    crops: deque = field(default_factory=deque)
    missed: int = 0


@dataclass
class Window:
    track: int
    start: float
    end: float
    crops: np.ndarray | None  # (T, S, S) uint8, None when the face was missing for most of the window
    found: int  # sampled frames in the window where the face was detected
    box: np.ndarray


class FaceWindows:
    """Feed sampled frames; get windows of T crops per face track.

    A frame where a track's face is not detected repeats the track's previous crop (faces rarely vanish
    for one frame); a track unseen for T sampled frames ends. A window whose face was found in fewer
    than half of its frames is reported as "no face" instead of being classified. `face` is the face
    finder the model was trained with: "haar" (detection) or "center" (a centred square, every frame).
    """

    def __init__(self, frames: int, size: int, margin: float, all_faces: bool, smooth: float = 0.5, face: str = "haar"):
        if face not in ("haar", "center"):
            raise ValueError(f"unknown face method {face!r} (use 'haar' or 'center')")
        self.t, self.size, self.margin, self.all_faces, self.smooth = frames, size, margin, all_faces, smooth
        self.face = face
        self.tracks: list[Track] = []
        self.times: deque = deque(maxlen=frames)
        self.next_id = 0

    def _match(self, boxes: list[np.ndarray]) -> dict[int, np.ndarray]:
        """Track id -> detection, greedily by overlap; unmatched detections start new tracks."""
        if not self.all_faces:
            boxes = boxes[:1]
        matched: dict[int, np.ndarray] = {}
        for box in boxes:
            free = [tr for tr in self.tracks if tr.id not in matched]
            best = max(free, key=lambda tr: iou(tr.box, box), default=None)
            if best is not None and (iou(best.box, box) > 0.3 or not self.all_faces):
                matched[best.id] = box
            else:
                track = Track(self.next_id, box, deque(maxlen=self.t))
                self.next_id += 1
                self.tracks.append(track)
                matched[track.id] = box
        return matched

    def add(self, frame: Frame) -> None:
        self.times.append(frame.time)
        boxes = [center_box(frame.gray.shape)] if self.face == "center" else detect_all(frame.gray)
        matched = self._match(boxes)
        for tr in self.tracks:
            if tr.id in matched:
                tr.box = self.smooth * tr.box + (1 - self.smooth) * matched[tr.id] if tr.crops else matched[tr.id]
                tr.missed = 0
                tr.crops.append(crop_square(frame.gray, tr.box, self.size, self.margin))
            else:
                tr.missed += 1
                tr.crops.append(None)
        self.tracks = [tr for tr in self.tracks if tr.missed < self.t]

    def windows(self, final: bool = False) -> list[Window]:
        """The current window of every live track (call every hop). A face must have been found in at
        least half of the window's T frames (`final`: of the frames there are, for videos shorter than
        one window)."""
        out = []
        start, end = self.times[0], self.times[-1]
        for tr in self.tracks:
            crops = list(tr.crops)
            found = sum(c is not None for c in crops)
            if found * 2 < (len(crops) if final else self.t):
                out.append(Window(tr.id, start, end, None, found, tr.box.copy()))
                continue
            # fill gaps with the nearest earlier crop (or the first found one)
            first = next(c for c in crops if c is not None)
            filled, last = [], first
            for c in [*([None] * (self.t - len(crops))), *crops]:
                last = c if c is not None else last
                filled.append(last)
            out.append(Window(tr.id, start, end, np.stack(filled), found, tr.box.copy()))
        if not self.tracks:
            out.append(Window(-1, start, end, None, 0, np.zeros(4)))
        return out

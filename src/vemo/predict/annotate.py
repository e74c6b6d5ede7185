"""Annotated output video: every frame with each face's box and its current (smoothed) emotion."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vemo.predict.stream import Frame


class AnnotatedWriter:
    """Writes frames as H.264 (MPEG-4 part 2 where libx264 is missing), one box and label per face.

    The file is written under a temporary name and renamed on `close`, so an interrupted run leaves
    no half-written video under the requested name.
    """

    def __init__(self, path: str | Path, labels: list[str], fps: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        self.labels, self.fps = labels, fps
        self.container, self.stream = None, None

    def _open(self, shape: tuple[int, int]) -> None:
        self.container = av.open(str(self.tmp), "w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
        self.stream.height, self.stream.width = shape[0] // 2 * 2, shape[1] // 2 * 2
        self.stream.pix_fmt = "yuv420p"

    def write(self, frame: Frame, current: dict[int, dict]) -> None:
        rgb = np.ascontiguousarray(frame.rgb if frame.rgb is not None else np.repeat(frame.gray[..., None], 3, 2))
        if self.container is None:
            self._open(rgb.shape[:2])
        rgb = rgb[: self.stream.height, : self.stream.width].copy()
        for row in current.values():
            if row["status"] != "ok":
                cv2.putText(rgb, "no face", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 80, 80), 2, cv2.LINE_AA)
                continue
            x, y, w, h = (int(round(v)) for v in row["box"])
            cv2.rectangle(rgb, (x, y), (x + w, y + h), (60, 220, 60), 2)
            text = f"{row['label']} {row['confidence']:.2f}"
            cv2.putText(rgb, text, (x, max(20, y - 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (60, 220, 60), 2, cv2.LINE_AA)
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self.container.mux(packet)

    def abort(self) -> None:
        """Drop the partial file (an error or Ctrl-C mid-video)."""
        if self.container is not None:
            with contextlib.suppress(Exception):  # the file is being thrown away
                self.container.close()
        self.tmp.unlink(missing_ok=True)

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.tmp.replace(self.path)

"""Annotated output video: every frame with each face's box and its current (smoothed) emotion."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vemo.io import remove_stale_temps
from vemo.predict.stream import Frame

# Box colours per face id (RGB), bright, with a dark outline; labels are white on a filled dark band so
# both stay readable over any background (green screens included: the first colour is amber, not green).
COLORS = [(255, 190, 0), (0, 190, 255), (255, 80, 200), (60, 220, 60), (255, 255, 60), (170, 120, 255)]
FONT = cv2.FONT_HERSHEY_SIMPLEX


CONTAINERS = {"mkv": "matroska", "m4v": "mp4"}  # file suffix -> FFmpeg muxer, where they differ


class AnnotatedWriter:
    """Writes frames as H.264 (MPEG-4 part 2 where libx264 is missing), one box and label per face.

    Boxes are drawn from the first frame a face is detected on; until the face's first complete window
    its label reads "..." (Hershey fonts have no ellipsis glyph). With `ids`, labels start with the face
    id (`#1 happy 0.62`), the id the CSV's `face` column holds.

    The file is written under a temporary name and renamed on `close`, so an interrupted run leaves
    no half-written video under the requested name.
    """

    def __init__(self, path: str | Path, ids: bool = False, fps: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a pid-tagged temporary (`vemo.io` naming): one left by a killed run is removed by the next
        remove_stale_temps(self.path.parent, self.path.name)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.video.tmp")
        self.ids, self.fps = ids, fps
        self.container, self.stream = None, None

    def _open(self, shape: tuple[int, int]) -> None:
        suffix = self.path.suffix.lower().lstrip(".")
        self.container = av.open(str(self.tmp), "w", format=CONTAINERS.get(suffix, suffix or "mp4"))
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
        self.stream.height, self.stream.width = shape[0] // 2 * 2, shape[1] // 2 * 2
        self.stream.pix_fmt = "yuv420p"

    def write(self, frame: Frame, overlay: dict[int, dict]) -> None:
        """Encode one frame with what `predict_frames` says to draw on it (per face: box, label)."""
        rgb = np.ascontiguousarray(frame.rgb if frame.rgb is not None else np.repeat(frame.gray[..., None], 3, 2))
        if self.container is None:
            self._open(rgb.shape[:2])
        rgb = rgb[: self.stream.height, : self.stream.width].copy()
        for face, row in overlay.items():
            if face < 0:
                label(rgb, "no face", (10, 10), (255, 80, 80))
                continue
            x, y, w, h = (int(round(v)) for v in row["box"])
            color = COLORS[face % len(COLORS)]
            cv2.rectangle(rgb, (x - 1, y - 1), (x + w + 1, y + h + 1), (20, 20, 20), 4)
            cv2.rectangle(rgb, (x, y), (x + w, y + h), color, 2)
            label(rgb, self.text(face, row), (x, y), color)
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self.container.mux(packet)

    def text(self, face: int, row: dict) -> str:
        words = [f"#{face}"] if self.ids else []
        words.append(row["label"] if row["label"] != "no-face" else "face lost")
        if row.get("confidence") is not None:
            words.append(f"{row['confidence']:.2f}")
        return " ".join(words)

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


@contextlib.contextmanager
def annotated_video(path: str | Path | None, ids: bool = False, fps: float = 30.0) -> Iterator[AnnotatedWriter | None]:
    """An AnnotatedWriter for `path` (None when no copy is asked for) that is finished when the block
    ends and dropped when it raises, Ctrl-C included: no half-written video under the requested name."""
    writer = AnnotatedWriter(path, ids, fps) if path else None
    try:
        yield writer
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()


def label(rgb: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int]) -> None:
    """White text on a filled dark band with a coloured edge, just above `corner` (below it at the top edge)."""
    scale = max(0.5, min(1.2, rgb.shape[0] / 600))
    thick = 1 if scale < 0.8 else 2
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    x = max(0, min(corner[0], rgb.shape[1] - tw - 6))
    top = corner[1] - th - base - 8
    y0 = top if top >= 0 else min(corner[1] + 2, rgb.shape[0] - th - base - 8)
    cv2.rectangle(rgb, (x, y0), (x + tw + 6, y0 + th + base + 6), (20, 20, 20), cv2.FILLED)
    cv2.rectangle(rgb, (x, y0), (x + tw + 6, y0 + th + base + 6), color, 1)
    cv2.putText(rgb, text, (x + 3, y0 + th + 3), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)

"""Decoding videos into grayscale frames, and choosing which frames to keep.

PyAV (FFmpeg) decodes every container vemo meets, CREMA-D's VP6-in-FLV included. Grayscale is the
luma plane of the decoded YUV picture, taken directly: converting to RGB and back would cost more than
decoding itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

LFS_MAGIC = b"version https://git-lfs"


class ClipError(Exception):
    """A clip that cannot be used; the message says why in words a user can act on.

    `kind` is a short category for the end-of-run summary (`skipped 44: 40 no-face, 4 corrupt`).
    """

    def __init__(self, message: str, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind


def check_file(path: str | Path) -> None:
    """Catch the common non-video files before FFmpeg gives an opaque error about them."""
    path = Path(path)
    if not path.exists():
        raise ClipError("file does not exist", "missing")
    size = path.stat().st_size
    if size == 0:
        raise ClipError("empty file (0 bytes)", "empty")
    with path.open("rb") as fh:
        head = fh.read(len(LFS_MAGIC))
    if head == LFS_MAGIC:
        raise ClipError(
            f"Git LFS pointer file ({size} bytes), not a video: the dataset was cloned without its media; "
            "run `git lfs pull` in the dataset repository",
            "lfs-pointer",
        )


# Video luma is usually "limited range" (black 16, white 235); stills are full range (0-255). Stretching
# luma to full range makes frames from videos and from images comparable.
_LIMITED_TO_FULL = np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8)
_PLANAR_YUV = ("yuv420p", "yuv422p", "yuv444p", "yuv410p", "yuv411p", "yuv440p")
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as a full-range (H, W) uint8 array (copied out of FFmpeg's padded buffer)."""
    name = frame.format.name
    if name in _PLANAR_YUV or name.replace("yuvj", "yuv") in _PLANAR_YUV:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        full = name.startswith("yuvj") or getattr(frame, "color_range", 0) == _FULL_RANGE
        return y.copy() if full else _LIMITED_TO_FULL[y]
    return frame.to_ndarray(format="gray")


def iter_video(path: str | Path) -> Iterator[tuple[av.VideoFrame, float]]:
    """(frame, time in seconds) for every frame of a video's first video stream, decoded lazily.

    Raises ClipError when the file is not a usable video. A file damaged part-way (a truncated
    download) ends at the damage: what decoded before it is kept.
    """
    check_file(path)
    n = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError("no video stream in the file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or 25)
            for frame in container.decode(stream):
                yield frame, float(frame.time) if frame.time is not None else n / rate
                n += 1
    except (av.error.FFmpegError, ValueError, OSError) as err:
        if n == 0:
            raise ClipError(f"corrupt or unreadable video ({type(err).__name__}: {err})") from err


def decode_gray(path: str | Path, min_frames: int = 2) -> list[np.ndarray]:
    """All frames of a video as grayscale uint8 arrays. Raises ClipError for unusable files.

    A video with fewer than `min_frames` frames is refused: one still repeated T times would be
    passed off as a clip.
    """
    frames = [luma(frame) for frame, _ in iter_video(path)]
    if not frames:
        raise ClipError("no frames could be decoded (zero-frame or corrupt video)")
    if len(frames) < min_frames:
        raise ClipError(f"only {len(frames)} frame(s) decoded: too short to be a clip", "too-short")
    return frames


def read_frames_folder(path: str | Path, min_frames: int = 2) -> list[np.ndarray]:
    """A folder of images as one clip, frames in file-name order. Raises ClipError."""
    import cv2

    from vemo.data.fer2013 import IMAGE_EXTENSIONS

    files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    frames = []
    for f in files:
        image = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ClipError(f"unreadable frame image {f.name}", "unreadable")
        if frames and image.shape != frames[0].shape:
            raise ClipError(
                f"frame {f.name} is {image.shape[1]}x{image.shape[0]}, the first frame is "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                "corrupt",
            )
        frames.append(image)
    if len(frames) < min_frames:
        raise ClipError(f"only {len(frames)} frame image(s): too short to be a clip", "too-short")
    return frames


def decode_clip(source: str | Path) -> list[np.ndarray]:
    """Grayscale frames of a video file or of a folder of frame images."""
    return read_frames_folder(source) if Path(source).is_dir() else decode_gray(source)


def sample_indices(n_frames: int, t: int) -> np.ndarray:
    """T indices spread uniformly over a clip of n frames: the centre of each of T equal segments.

    Clips shorter than T repeat frames (each kept frame stays in temporal order).
    """
    if n_frames < 1 or t < 1:
        raise ValueError(f"need at least one frame and T >= 1 (got n={n_frames}, T={t})")
    return np.minimum(((np.arange(t) + 0.5) * n_frames / t).astype(np.int64), n_frames - 1)

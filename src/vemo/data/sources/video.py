"""Decoding videos into grayscale frames, and choosing which frames to keep.

PyAV (FFmpeg) decodes every container vemo meets, CREMA-D's VP6-in-FLV included. Grayscale is the
luma plane of the decoded YUV picture, taken directly: converting to RGB and back would cost more than
decoding itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vemo.data.sources.formats import IMAGE_EXTENSIONS

if TYPE_CHECKING:  # PyAV is imported where a video is opened: stills-only work runs without it
    import av

LFS_MAGIC = b"version https://git-lfs"


class MissingDependency(ImportError):
    """A package vemo needs for this input is not installed: the command stops with one line (it is no
    fault of any one file, so a batch run does not skip file after file)."""


def _pyav():
    """PyAV, imported where a video is opened, so stills-only work (FER2013 on a machine without it)
    runs; a video on such a machine gets one clear line."""
    try:
        import av
    except ImportError as err:
        raise MissingDependency("decoding video needs PyAV (`pip install av`), which is not installed") from err
    return av


class ClipError(Exception):
    """A clip that cannot be used; the message says why in words a user can act on.

    `kind` is a short category for the end-of-run summary (`skipped 44: 40 no-face, 4 corrupt`).
    """

    def __init__(self, message: str, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind


def unexpected(err: Exception) -> ClipError:
    """A failure no check foresaw (a decoder or detector error on one odd file), as a skip reason: a
    batch run records it and goes on with the other inputs instead of losing them all."""
    return ClipError(f"unexpected error: {type(err).__name__}: {err}", "error")


def is_lfs_pointer(path: str | Path) -> bool:
    """Whether a file is a Git LFS pointer (a clone made without its large files), from its first bytes."""
    with Path(path).open("rb") as fh:
        return fh.read(len(LFS_MAGIC)) == LFS_MAGIC


def check_file(path: str | Path, what: str = "a video") -> None:
    """Catch the common non-media files before FFmpeg (or a CSV parser) gives an opaque error about them;
    `what` the file should have been, for the message."""
    path = Path(path)
    if not path.exists():
        raise ClipError("file does not exist", "missing")
    size = path.stat().st_size
    if size == 0:
        raise ClipError("empty file (0 bytes)", "empty")
    if is_lfs_pointer(path):
        raise ClipError(
            f"Git LFS pointer file ({size} bytes), not {what}: the dataset was cloned without its media; "
            "run `git lfs pull` in the dataset repository",
            "lfs-pointer",
        )


# Video luma is usually "limited range" (black 16, white 235); stills are full range (0-255). Stretching
# luma to full range makes frames from videos and from images comparable.
_LIMITED_TO_FULL = np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8)
_PLANAR_YUV = ("yuv420p", "yuv422p", "yuv444p", "yuv410p", "yuv411p", "yuv440p")
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as a full-range (H, W) uint8 array (copied out of FFmpeg's padded buffer), upright.

    Phones store portrait video as landscape pictures plus a display rotation; the Haar detector only
    finds upright faces, so every decoder in vemo (prepare, evaluate, predict) turns frames the way a
    player shows them.
    """
    name = frame.format.name
    if name in _PLANAR_YUV or name.replace("yuvj", "yuv") in _PLANAR_YUV:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        full = name.startswith("yuvj") or getattr(frame, "color_range", 0) == _FULL_RANGE
        y = y.copy() if full else _LIMITED_TO_FULL[y]
    else:
        y = frame.to_ndarray(format="gray")
    turns = upright_turns(frame)
    return np.ascontiguousarray(np.rot90(y, turns)) if turns else y


def upright_turns(frame: av.VideoFrame) -> int:
    """Quarter turns counter-clockwise (np.rot90's k) that display the frame as its display matrix says."""
    return round(getattr(frame, "rotation", 0) / 90) % 4


def declared_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    """How many frames the container says the stream has: its frame count, else its duration times its
    frame rate (FLV, CREMA-D's format, only gives the duration); None when it says neither."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / _pyav().time_base
    else:
        return None
    return max(1, round(seconds * float(rate))) if rate else None


def iter_video(path: str | Path, facts: dict | None = None) -> Iterator[tuple[av.VideoFrame, float]]:
    """(frame, time in seconds) for every frame of a video's first video stream, decoded lazily.

    Raises ClipError when the file is not a usable video. A file damaged part-way (a truncated
    download) ends at the damage: what decoded before it is kept. `facts`, when given, receives the
    frame count the container declares (`declared`), the frames decoded so far (`decoded`) and the error
    that ended decoding early (`error`), so a caller can tell a truncated file from a complete one.
    """
    av = _pyav()
    check_file(path)
    facts = {} if facts is None else facts
    n = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError("no video stream in the file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            facts["declared"] = declared_frames(container, stream)
            rate = float(stream.average_rate or 25)
            for frame in container.decode(stream):
                facts["decoded"] = n + 1
                yield frame, float(frame.time) if frame.time is not None else n / rate
                n += 1
    except (av.error.FFmpegError, ValueError, OSError) as err:
        if n == 0:
            raise ClipError(f"corrupt or unreadable video ({type(err).__name__}: {err})") from err
        facts["error"] = f"{type(err).__name__}: {err}"


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


def _image_end_missing(data: bytes) -> bool:
    """A JPEG without its end marker or a PNG without its IEND chunk: the file was cut short. OpenCV
    decodes such a file anyway and fills the missing part with grey, so it has to be checked here."""
    tail = data.rstrip(b"\0\r\n ")  # some writers pad after the end marker
    if data.startswith(b"\xff\xd8"):
        return not tail.endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG"):
        return b"IEND" not in data[-32:]
    return False


def read_image(path: str | Path) -> np.ndarray:
    """A grayscale uint8 image file. Raises ClipError: missing, empty, Git LFS pointer, unreadable, or
    truncated (a JPEG or PNG whose end is missing)."""
    import cv2

    check_file(path, "an image")
    data = Path(path).read_bytes()
    if _image_end_missing(data):
        raise ClipError(f"truncated image: the file ends early ({len(data)} bytes); copy it again", "truncated")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ClipError("unreadable image (not a valid JPEG/PNG)", "unreadable")
    return image


def _frame_files(path: str | Path, min_frames: int) -> list[Path]:
    files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < min_frames:
        raise ClipError(f"only {len(files)} frame image(s): too short to be a clip", "too-short")
    return files


def _frame_image(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except ClipError as err:
        raise ClipError(f"frame {path.name}: {err}", err.kind) from None


@dataclass
class Sampled:
    """T frames sampled from a clip, and how many frames the clip has (fewer than T: frames repeat)."""

    frames: list[np.ndarray]
    n_frames: int


def sample_frames_folder(path: str | Path, t: int, min_frames: int = 2) -> Sampled:
    """T frames of a folder of frame images (file-name order); only the sampled files are read."""
    files = _frame_files(path, min_frames)
    idx = sample_indices(len(files), t).tolist()
    images = {i: _frame_image(files[i]) for i in sorted(set(idx))}
    first = images[idx[0]]
    for i, image in images.items():
        if image.shape != first.shape:
            raise ClipError(
                f"frame {files[i].name} is {image.shape[1]}x{image.shape[0]}, "
                f"frame {files[idx[0]].name} is {first.shape[1]}x{first.shape[0]}",
                "corrupt",
            )
    return Sampled([images[i] for i in idx], len(files))


class _Reservoir:
    """An even spread of a stream of frames in bounded memory: every `stride`-th frame, at most `cap` of
    them; when full, every other one is dropped and the stride doubles. A clip of up to `cap` frames is
    held whole, so sampling from it is exact."""

    def __init__(self, cap: int):
        self.cap, self.stride, self.kept = cap, 1, {}

    def offer(self, i: int, make) -> None:
        if i % self.stride:
            return
        self.kept[i] = make()
        if len(self.kept) > self.cap:
            self.stride *= 2
            self.kept = {k: v for k, v in self.kept.items() if k % self.stride == 0}

    def nearest(self, i: int) -> np.ndarray:
        return self.kept[min(round(i / self.stride) * self.stride, max(self.kept))]


# A clip is held whole up to this many bytes of grayscale frames (CREMA-D's 480x360 clips: ~190 frames,
# 6 s), so sampling normal clips is exact whatever the container declares; longer ones keep an even spread.
RESERVOIR_BYTES = 32 * 2**20
# Decoding may end this far short of the declared frame count before a clip counts as truncated:
# durations are rounded, and some containers count a frame or two more than they hold.
TRUNCATION_SLACK = (2, 0.05)  # frames, fraction of the declared count


def truncation_reason(n: int, facts: dict) -> str | None:
    """Why a decoded stream of n frames is not the whole clip, or None when it is (`facts`: what
    `iter_video` recorded while decoding)."""
    declared = facts.get("declared")
    slack = max(TRUNCATION_SLACK[0], TRUNCATION_SLACK[1] * (declared or 0))
    if declared and n < declared - slack:
        why = f" ({facts['error']})" if "error" in facts else " (the file ends early)"
        return f"truncated: {n} of the {declared} frames it declares decode{why}; copy it again"
    if "error" in facts:
        return f"truncated: decoding failed after {n} frames ({facts['error']}); copy it again"
    return None


def sample_video(path: str | Path, t: int, min_frames: int = 2) -> Sampled:
    """T frames sampled uniformly (`sample_indices`) from a video, in memory bounded for any length.

    Every frame is decoded, but only the sampled ones (planned from the frame count the container
    declares) and a bounded reservoir are kept as arrays; when the stream turns out longer or shorter
    than declared, the sample is taken from the reservoir (exact for clips it holds whole). Raises
    ClipError, kind "truncated" when the file ends well before the frames it declares (a partial
    download) or decoding fails part-way.
    """
    facts: dict = {}
    plan: set[int] = set()
    picked: dict[int, np.ndarray] = {}
    reservoir = _Reservoir(2 * t)
    n = 0
    for i, (frame, _) in enumerate(iter_video(path, facts)):
        if i == 0:
            plan = set(sample_indices(facts["declared"], t).tolist()) if facts.get("declared") else set()
            reservoir = _Reservoir(max(2 * t, RESERVOIR_BYTES // max(1, frame.width * frame.height)))
        if i in plan:
            picked[i] = luma(frame)
        reservoir.offer(i, lambda i=i, frame=frame: picked[i] if i in picked else luma(frame))
        n = i + 1
    if n == 0:
        raise ClipError("no frames could be decoded (zero-frame or corrupt video)")
    if (why := truncation_reason(n, facts)) is not None:
        raise ClipError(why, "truncated")
    if n < min_frames:
        raise ClipError(f"only {n} frame(s) decoded: too short to be a clip", "too-short")
    idx = sample_indices(n, t).tolist()
    exact = n == facts.get("declared")
    return Sampled([picked[i] if exact else reservoir.nearest(i) for i in idx], n)


def sample_clip(source: str | Path, t: int) -> Sampled:
    """T frames of a video file or of a folder of frame images, holding no more than that in memory."""
    return sample_frames_folder(source, t) if Path(source).is_dir() else sample_video(source, t)


def sample_indices(n_frames: int, t: int) -> np.ndarray:
    """T indices spread uniformly over a clip of n frames: the centre of each of T equal segments.

    Clips shorter than T repeat frames (each kept frame stays in temporal order).
    """
    if n_frames < 1 or t < 1:
        raise ValueError(f"need at least one frame and T >= 1 (got n={n_frames}, T={t})")
    return np.minimum(((np.arange(t) + 0.5) * n_frames / t).astype(np.int64), n_frames - 1)

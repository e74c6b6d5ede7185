"""Receiving an upload safely, and finding out what it is from its bytes.

The multipart body is parsed as it streams in and only the field `file` is written, into the job's
private folder under a fixed name: the client's file name is never used (it could name a path) and its
declared content type is never trusted. Past the size limit the upload stops at once with HTTP 413,
before the rest is read. What the bytes are is decided from their content: an image when OpenCV
recognises its signature, else a video when FFmpeg opens it, finds a video stream and decodes a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from vemo.data.sources.video import is_lfs_pointer
from vemo.serve.errors import ServeError, too_large, too_long

UPLOAD_NAME = "upload"  # fixed: nothing the client sends becomes part of a server path
MULTIPART_OVERHEAD = 64 * 1024  # headers, boundaries and small extra fields around the file


@dataclass(frozen=True)
class Media:
    """What an upload turned out to be."""

    kind: str  # "video" or "image"
    fps: float  # frames per second of a video (0 for an image)
    seconds: float | None  # duration when the container tells (None for images, or unknown)
    frames: int | None  # expected number of frames, for progress (None when unknown)


class _FileField:
    """Multipart parser callbacks that write the part named `file` to `path`, refusing past `limit` bytes."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit = path, limit
        self.size, self.found = 0, False
        self._fh = None
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""

    def callbacks(self) -> dict:
        names = ["part_begin", "header_field", "header_value", "header_end", "headers_finished", "part_data"]
        return {f"on_{name}": getattr(self, f"on_{name}") for name in [*names, "part_end"]}

    def on_part_begin(self) -> None:
        self._headers, self._field, self._value = {}, b"", b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and not self.found:  # the first `file` part; others are ignored
            self.found = True
            self._fh = self.path.open("xb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._fh is None:
            return
        self.size += end - start
        if self.size > self.limit:
            raise too_large(self.limit)
        self._fh.write(data[start:end])

    def on_part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def receive_upload(request: Request, folder: Path, limit: int) -> Path:
    """Stream the multipart field `file` into folder/upload; ServeError 400 or 413 when it cannot be had."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        how = "send the file as multipart/form-data in the field `file` (curl -F file=@video.mp4)"
        raise ServeError(400, "bad_request", how)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise too_large(limit)  # refused before reading a byte of it
    sink = _FileField(folder / UPLOAD_NAME, limit)
    parser = MultipartParser(params[b"boundary"], sink.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + MULTIPART_OVERHEAD:  # a body without Content-Length, or many other fields
                raise too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise ServeError(400, "bad_request", f"malformed multipart body: {err}") from err
    except ClientDisconnect as err:  # the client left mid-upload: nobody to answer, nothing to log but a line
        raise ServeError(400, "bad_request", "the client disconnected before the upload ended") from err
    finally:
        sink.close()
    if not sink.found:
        raise ServeError(400, "bad_request", "no field `file` in the form (curl -F file=@video.mp4)")
    if sink.size == 0:
        raise ServeError(400, "bad_request", "the uploaded file is empty (0 bytes)")
    return folder / UPLOAD_NAME


def sniff(path: Path, max_seconds: float) -> Media:
    """Image or video, decided from the content. ServeError 415 when it is neither, 422 when it is one but
    unusable (undecodable, longer than `max_seconds`)."""
    if cv2.haveImageReader(str(path)):  # reads the file's signature, not its name
        if cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:  # decodes, at an eighth of the size
            raise ServeError(422, "unreadable", "the file starts like an image but could not be decoded")
        return Media("image", 0.0, None, None)
    return _sniff_video(path, max_seconds)


def _sniff_video(path: Path, max_seconds: float) -> Media:
    not_media = "the file is neither a video nor an image that vemo can decode"
    if is_lfs_pointer(path):  # a clone without its media: say so, as `vemo predict` does
        raise ServeError(415, "not_media", f"{not_media}: it is a Git LFS pointer (run `git lfs pull`)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ServeError(415, "not_media", f"{not_media}: it holds no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 0) or 25.0
            seconds = _duration(container, stream)
            first = next(iter(container.decode(stream)), None)
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise ServeError(415, "not_media", not_media) from err
    if first is None:
        raise ServeError(422, "unreadable", "the video holds no decodable frame")
    if seconds is not None and seconds > max_seconds:
        raise too_long(seconds, max_seconds)
    frames = stream.frames or (round(seconds * fps) if seconds else None)
    return Media("video", fps, seconds, frames)


def _duration(container, stream) -> float | None:
    if container.duration:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None

"""One job: an uploaded video or image through vemo's predict pipeline, into the JSON the API returns.

The pipeline is `vemo predict`'s: `predict_frames` (sampled windows, face tracks, smoothing) with the
annotated video of `AnnotatedWriter` for videos, `predict_image` (the still -> sequence protocol) for
images, and the CSV schema of `vemo.predict.table`. This module only feeds it frames under the server's
limits (length, time) and shapes its rows for the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from vemo.predict.annotate import annotated_video
from vemo.predict.run import NO_FACE, Predictor, predict_frames, predict_image, summarize, truncation_named
from vemo.predict.stream import Frame, video_frames
from vemo.predict.table import records, write_csv
from vemo.serve.errors import ServeError, too_long
from vemo.serve.upload import Media

CSV_NAME, VIDEO_NAME = "windows.csv", "annotated.mp4"
SOURCE = "upload"  # the CSV's `source` column: the client's file name is not trusted, not even as text


@dataclass(frozen=True)
class Limits:
    """How a job runs: window and hop of the predictor, longest video, longest analysis."""

    window_s: float = 2.0
    hop_s: float = 0.5
    max_seconds: float = 600.0
    time_limit_s: float = 300.0


def analyse(
    path: Path,
    media: Media,
    predictor: Predictor,
    folder: Path,
    annotate: bool,
    limits: Limits,
    report: Callable[[float], None] = lambda fraction: None,
) -> dict:
    """Predict `path` into folder/windows.csv (and folder/annotated.mp4 for a video if `annotate`); return
    the result for the API. ServeError 422 when no face is found, 504 past the time limit; ClipError
    (from the pipeline) when the video is unusable."""
    if media.kind == "image":
        rows = predict_image(read_gray(path), predictor)
    else:
        rows = _predict_video(path, media, predictor, folder / VIDEO_NAME if annotate else None, limits, report)
    if all(r["status"] != "ok" for r in rows):
        raise ServeError(422, "no_face", "no face was found (vemo needs a face seen from the front, not too small)")
    write_csv(folder / CSV_NAME, records(rows, predictor.labels, SOURCE), predictor.labels)
    return result_json(rows, predictor.labels, media, limits)


def read_gray(path: Path):
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ServeError(422, "unreadable", "the image could not be decoded")
    return image


def _predict_video(
    path: Path,
    media: Media,
    predictor: Predictor,
    annotated: Path | None,
    limits: Limits,
    report: Callable[[float], None],
) -> list[dict]:
    """`predict_video`, with the frames passed through the server's limits on their way in."""
    stream: dict = {}
    with annotated_video(annotated, fps=media.fps) as writer, truncation_named(stream):
        frames = _guarded(video_frames(path, want_rgb=writer is not None, facts=stream), limits, media.frames, report)
        return predict_frames(
            frames, predictor, limits.window_s, limits.hop_s, on_frame=writer.write if writer else None
        )


def _guarded(
    frames: Iterable[Frame], limits: Limits, expected: int | None, report: Callable[[float], None]
) -> Iterator[Frame]:
    """The frames, stopping the job past the time limit or the length limit (a container may not state its
    duration); progress reported every 10 frames when the frame count is known."""
    deadline, first = time.monotonic() + limits.time_limit_s, None
    for n, frame in enumerate(frames, 1):
        first = frame.time if first is None else first
        if frame.time - first > limits.max_seconds:
            raise too_long(frame.time - first, limits.max_seconds)
        if time.monotonic() > deadline:
            raise ServeError(
                504, "timeout", f"the analysis took longer than this server's limit of {limits.time_limit_s:g} s"
            )
        if expected and n % 10 == 0:
            report(min(0.99, n / expected))
        yield frame


def result_json(rows: list[dict], labels: list[str], media: Media, limits: Limits) -> dict:
    """The API's result: the overall label, every window with its probabilities, and the faces seen."""
    summary = summarize(rows)
    return {
        "label": summary["majority"],
        "kind": media.kind,
        "labels": labels,
        "window_s": limits.window_s,
        "hop_s": limits.hop_s,
        "counts": summary["counts"],
        "windows": [_window(r, labels) for r in rows],
        "faces": _faces(rows),
    }


def _window(row: dict, labels: list[str]) -> dict:
    ok = row["status"] == "ok"
    return {
        "face": row["face"],
        "start": row["start"],
        "end": row["end"],
        "label": row["label"],
        "confidence": row["confidence"],
        "probabilities": {lab: row[f"smoothed_{lab}"] for lab in labels} if ok else None,
        "raw_probabilities": {lab: row[f"p_{lab}"] for lab in labels} if ok else None,
        "box": [row[k] for k in "xywh"],
    }


def _faces(rows: list[dict]) -> list[dict]:
    """Per face track: windows, windows with the face found, majority label, when it was seen."""
    faces = []
    for face in sorted({r["face"] for r in rows if r["face"] >= 0}):
        mine = [r for r in rows if r["face"] == face]
        ok = [r for r in mine if r["status"] == "ok"]
        faces.append(
            {
                "id": face,
                "windows": len(mine),
                "windows_with_face": len(ok),
                "label": summarize(ok)["majority"] if ok else NO_FACE,
                "first_seen": mine[0]["start"],
                "last_seen": mine[-1]["end"],
            }
        )
    return faces

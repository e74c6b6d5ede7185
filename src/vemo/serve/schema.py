"""The API's JSON shapes, as pydantic models: they validate responses and document them at /docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Window(BaseModel):
    face: int = Field(description="face track id (0 = the first face seen; -1 = no face in the frame at all)")
    start: float = Field(description="window start, seconds")
    end: float = Field(description="window end, seconds")
    label: str = Field(description="the window's emotion (smoothed over neighbouring windows), or 'no-face'")
    confidence: float | None = Field(description="probability of `label`; null without a face")
    probabilities: dict[str, float] | None = Field(description="smoothed class probabilities; `label` is their argmax")
    raw_probabilities: dict[str, float] | None = Field(description="this window's own probabilities, unsmoothed")
    box: list[float] = Field(description="face box: x, y, width, height in pixels")


class Face(BaseModel):
    id: int
    windows: int = Field(description="windows while the face was tracked")
    windows_with_face: int = Field(description="of those, windows where it was found in most frames")
    label: str = Field(description="the face's most frequent window label")
    first_seen: float
    last_seen: float


class Links(BaseModel):
    csv: str = Field(description="the windows as CSV (raw and smoothed probabilities)")
    video: str | None = Field(description="the annotated video (MP4), when asked for with annotate=true")


class PredictResult(BaseModel):
    label: str = Field(description="the overall label: the most frequent window label ('no-face' if none)")
    kind: Literal["video", "image"] = Field(description="what the upload was found to be, from its content")
    labels: list[str] = Field(description="the model's classes")
    window_s: float
    hop_s: float
    counts: dict[str, int] = Field(description="windows per label")
    windows: list[Window]
    faces: list[Face]
    links: Links


class ErrorBody(BaseModel):
    error: str = Field(description="a stable code: too_large, not_media, unreadable, too_long, no_face, busy, ...")
    detail: str = Field(description="what went wrong, in words for people")


class JobError(ErrorBody):
    status: int = Field(description="the HTTP status /api/predict would have answered with")


class JobStatus(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float = Field(description="share of the video analysed, 0-1 (rises in steps; 1 when done)")
    result: PredictResult | None = None
    error: JobError | None = None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    labels: list[str]
    window_s: float
    hop_s: float
    face: dict[str, str | float | int] = Field(
        description="how faces are found and cropped: the model's own settings or `vemo serve --set prepare.KEY=VALUE`"
    )
    max_upload_mb: float
    max_seconds: float
    workers: int
    queue_size: int
    busy: int = Field(description="jobs running or waiting now")

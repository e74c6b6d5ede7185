"""Emotions over time in a video (or in a still image), per face: the rows behind `vemo.predict` and `vemo predict`.

Each window of `window_s` seconds (T frames sampled in it, like a training clip) is classified; the
probabilities are smoothed over time per face (exponential moving average) so the label does not
flicker between neighbouring windows. Windows without a face say so instead of guessing. A still image
becomes T frames of simulated head motion (`vemo.data.preprocessing.stills`, the fixed protocol `vemo evaluate`
applies to image datasets) and gives one row per face.

Nothing here writes files or prints: `vemo.predict.api` turns rows into a table, `cli_support` writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vemo.checkpoint import load_checkpoint
from vemo.config import PrepareConfig
from vemo.data.loading.loader import model_inputs
from vemo.data.preprocessing.face import crop_square, detect_all
from vemo.data.preprocessing.stills import to_sequences
from vemo.data.sources.video import ClipError, truncation_reason
from vemo.models.registry import fuse_conv_bn, to_channels_last
from vemo.predict.stream import FaceWindows, Frame, video_fps, video_frames
from vemo.training.distributed import resolve_device

NO_FACE = "no-face"
PARTIAL = "its windows cover only the frames that decoded"  # said of a truncated video's result
DIGITS = 6  # probabilities are rounded to 1e-6: exact enough to compare runtimes, short in CSV/JSON
CLIP = "clip"  # window="clip": the whole clip as one window, sampled as `vemo evaluate` samples it
WINDOW_HELP = {"window": " or 'clip'", "hop": ""}
PENDING = "..."  # the annotated video's label for a face seen before its first complete window
# How faces become crops: taken from the checkpoint (as its training clips were made) unless given.
FACE_SETTINGS = ("face", "detect_frames", "margin", "size", "frames")

log = logging.getLogger(__name__)


class Predictor:
    """A checkpoint ready to classify windows: the model, its labels, frame size, T and statistics.

    Faces are found and cropped with the settings the model's training clips were made with (face
    finder, detect_frames, margin, size, frames: `Checkpoint.apply_preprocessing`), except those in
    `preprocessing`, the caller's explicit choices (`vemo predict --set prepare.margin=0.2`). The frame
    size is the model's own: another one is refused."""

    def __init__(
        self,
        checkpoint: str | Path,
        threads: int = 0,
        device: str = "cpu",
        preprocessing: Mapping[str, Any] | None = None,
    ):
        if threads:
            torch.set_num_threads(threads)
        given = dict(preprocessing or {})
        if unknown := sorted(set(given) - set(FACE_SETTINGS)):
            raise ValueError(
                f"a model is given face settings only ({', '.join(FACE_SETTINGS)}), not {', '.join(unknown)}"
            )
        ckpt = load_checkpoint(checkpoint)
        if given.get("size", ckpt.frame_size) != ckpt.frame_size:
            raise ValueError(f"size {given['size']}: the model takes {ckpt.frame_size}x{ckpt.frame_size} frames")
        self.device = resolve_device(device)
        # channels-last ~1.4x and conv+BN folding ~1.07x faster on CPU (bench/predict.py)
        self.model = to_channels_last(fuse_conv_bn(ckpt.build_model())).to(self.device)
        self.labels: list[str] = list(ckpt.labels)
        self.prepare = PrepareConfig(**given)  # the caller's face settings, the model's for the rest
        ckpt.apply_preprocessing(self.prepare, keep=given)
        self.stats = ckpt.stats
        self.temperature = ckpt.temperature  # fitted on the validation split: confidences mean what they say

    @property
    def frames(self) -> int:
        """T, frames per window (`prepare` is the one record of the face settings; these read it)."""
        return self.prepare.frames

    @property
    def size(self) -> int:
        return self.prepare.size

    @property
    def margin(self) -> float:
        return self.prepare.margin

    @property
    def face(self) -> str:
        return self.prepare.face

    @torch.inference_mode()
    def probabilities(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, S, S) uint8 crops -> (B, C) calibrated class probabilities, softmax(logits / temperature)."""
        x = model_inputs(torch.from_numpy(np.ascontiguousarray(clips)).to(self.device), self.stats)
        return torch.softmax(self.model(x).logits / self.temperature, dim=1).cpu().numpy()


def check_window(window_s: float | str, hop_s: float) -> None:
    """Refuse windows and hops that cannot advance through time (they would loop or divide by zero)."""
    if window_s == CLIP:
        window_s = 1.0
    for name, value in (("window", window_s), ("hop", hop_s)):
        if not isinstance(value, int | float) or not value > 0:  # also catches NaN
            raise ValueError(f"--{name} must be a positive number of seconds{WINDOW_HELP[name]} (got {value})")


def predict_frames(
    frames,
    predictor: Predictor,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    all_faces: bool = False,
    smooth: float = 0.6,
    on_frame=None,
) -> list[dict]:
    """Rows, one per (window, face): face, start, end, status, label, confidence, x, y, w, h, found,
    p_<class> and smoothed p_<class>.

    `on_frame(frame, overlay)` is called for every decoded frame with what to draw per face id: the
    face's current box and its latest row's label (`PENDING` before the face's first window).
    Raises ClipError when no frame decoded or too few were sampled to classify anything.
    """
    check_window(window_s, hop_s)
    faces = FaceWindows(predictor.frames, predictor.size, predictor.margin, all_faces, face=predictor.face)
    step = window_s / predictor.frames
    next_sample = next_emit = None  # clocks start at the first frame's time (streams may not start at 0)
    rows: list[dict] = []
    ema: dict[int, np.ndarray] = {}
    current: dict[int, dict] = {}
    overlay: dict[int, dict] = {}
    decoded = 0
    for frame in frames:
        decoded += 1
        if next_sample is None:
            next_sample, next_emit = frame.time, frame.time + window_s - step / 2
        if frame.time + 1e-6 >= next_sample:
            faces.add(frame)
            next_sample = max(next_sample + step, frame.time + step / 2)  # low frame rates: no bursts
            if frame.time + 1e-6 >= next_emit and len(faces.times) == predictor.frames:
                current = _emit(faces, predictor, ema, smooth, rows)
                next_emit = max(next_emit + hop_s, frame.time + hop_s / 2)
            overlay = _overlay(faces, current)
        if on_frame is not None:
            on_frame(frame, overlay)
    if not rows:
        _too_short(decoded, len(faces.times), window_s)
        _emit(faces, predictor, ema, smooth, rows, final=True)  # shorter than one window: classify what there is
    return rows


def _too_short(decoded: int, sampled: int, window_s: float) -> None:
    """The real reason a video gave no window (instead of an empty, successful-looking result)."""
    if decoded == 0:
        raise ClipError("no frames could be decoded (zero-frame or corrupt video)", "empty")
    if sampled < 2:
        raise ClipError(
            f"too short: {decoded} frame(s) decoded, {sampled} sampled; a window needs at least 2 "
            f"(a still image? give it as an image file)",
            "too-short",
        )


def _overlay(faces: FaceWindows, current: dict[int, dict]) -> dict[int, dict]:
    """Per live face track: its latest box and the label of its latest window (PENDING before one)."""
    out = {}
    for tr in faces.tracks:
        row = current.get(tr.id, {"status": PENDING, "label": PENDING, "confidence": None})
        out[tr.id] = {**row, "face": tr.id, "box": tr.box.copy()}
    if not out and -1 in current:
        out[-1] = current[-1]
    return out


def _emit(
    faces: FaceWindows, predictor: Predictor, ema: dict, smooth: float, rows: list[dict], final: bool = False
) -> dict[int, dict]:
    """Classify the current window of every face; append the rows; return them by face id."""
    current = {}
    for w in faces.windows(final):
        current[w.track] = _row(w, predictor, ema, smooth)
        rows.append(current[w.track])
    return current


def _box(box) -> dict[str, float]:
    return dict(zip("xywh", (round(float(v), 1) for v in box), strict=True))


def _row(w, predictor: Predictor, ema: dict[int, np.ndarray], smooth: float) -> dict:
    row = {"face": w.track, "start": round(w.start, 3), "end": round(w.end, 3), "found": w.found, **_box(w.box)}
    if w.crops is None:
        ema.pop(w.track, None)  # after a gap, smoothing starts afresh
        return {**row, "status": NO_FACE, "label": NO_FACE, "confidence": None}
    p = predictor.probabilities(w.crops[None])[0]
    s = p if w.track not in ema else smooth * ema[w.track] + (1 - smooth) * p
    ema[w.track] = s
    return {**row, **_labelled(p, s, predictor.labels)}


def _labelled(p: np.ndarray, s: np.ndarray, labels: list[str]) -> dict:
    """Label and confidence from the smoothed probabilities `s`; raw (p_) and smoothed ones per class."""
    k = int(s.argmax())
    out = {"status": "ok", "label": labels[k], "confidence": round(float(s[k]), DIGITS)}
    out.update({f"p_{lab}": round(float(v), DIGITS) for lab, v in zip(labels, p, strict=True)})
    out.update({f"smoothed_{lab}": round(float(v), DIGITS) for lab, v in zip(labels, s, strict=True)})
    return out


def predict_image(gray: np.ndarray, predictor: Predictor, all_faces: bool = False) -> list[dict]:
    """One row per face of a still (the largest only unless `all_faces`), or one no-face row.

    The face crop becomes T frames by the fixed still -> sequence protocol `vemo evaluate` uses for
    image datasets, so an image gets the same probabilities from `predict` as from `evaluate`'s inputs.
    """
    boxes = detect_all(gray)
    if not boxes:
        return [{"face": -1, "start": 0.0, "end": 0.0, "found": 0, **_box(np.zeros(4)), "status": NO_FACE,
                 "label": NO_FACE, "confidence": None}]  # fmt: skip
    boxes = boxes if all_faces else boxes[:1]
    crops = np.stack([crop_square(gray, b, predictor.size, predictor.margin) for b in boxes])
    clips = to_sequences(torch.from_numpy(crops[:, None]), predictor.frames).numpy()
    probs = predictor.probabilities(clips)
    return [
        {"face": k, "start": 0.0, "end": 0.0, "found": 1, **_box(b), **_labelled(p, p, predictor.labels)}
        for k, (b, p) in enumerate(zip(boxes, probs, strict=True))
    ]


def predict_clip(source: str | Path, predictor: Predictor) -> list[dict]:
    """The whole clip as one window, made exactly as `vemo prepare` makes a training or evaluation clip
    (`process_clip`: T frames spread over the whole clip, the face found on a few and interpolated, a
    centre crop where none is found), so `predict --window clip` and `evaluate` agree on a clip.
    Status is `centre-crop` when no face was found (the label is still given, as `evaluate` gives one)."""
    from vemo.data.loading.prepare import process_clip

    crops, info = process_clip(str(source), predictor.prepare)
    p = predictor.probabilities(crops[None])[0]
    duration = round(info["n_frames"] / video_fps(source), 3)
    row = {"face": 0, "start": 0.0, "end": duration, "found": len(crops) if info["face_detected"] else 0}
    row.update({"x": None, "y": None, "w": None, "h": None, **_labelled(p, p, predictor.labels)})
    return [{**row, "status": "ok" if info["face_detected"] else "centre-crop"}]


def predict_video(
    source: str | Path,
    predictor: Predictor,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    all_faces: bool = False,
    annotate: str | Path | None = None,
    progress: bool = False,
) -> tuple[list[dict], dict]:
    """Rows of one video file and facts about the run (frames decoded; `truncated`, the reason, when the
    file ends before the frames it declares: its rows then cover only what decoded); an annotated copy
    if asked.

    Raises ClipError for unusable files (the annotated video is then not left half-written), naming
    the truncation when that is why no window could be made.
    """
    from vemo.predict.annotate import annotated_video

    source = Path(source)
    if window_s == CLIP:
        return predict_clip(source, predictor), {"window": CLIP}
    stream: dict = {}  # what the decoder records: frames declared and decoded, the error that ended it
    with (
        annotated_video(annotate, all_faces, video_fps(source) if annotate else 30.0) as writer,
        tqdm(desc=source.name, unit="frame", disable=not progress, leave=False) as bar,
    ):

        def on_frame(frame: Frame, overlay: dict) -> None:
            bar.update()
            if writer is not None:
                writer.write(frame, overlay)

        frames = video_frames(source, want_rgb=writer is not None, facts=stream)
        with truncation_named(stream):
            rows = predict_frames(frames, predictor, window_s, hop_s, all_faces, on_frame=on_frame)
    decoded = stream.get("decoded", 0)
    facts: dict = {"frames_decoded": decoded}
    if (why := truncation_reason(decoded, stream)) is not None:
        facts["truncated"] = why
    return rows, facts


@contextmanager
def truncation_named(stream: dict) -> Iterator[None]:
    """Restate "too few frames for a window" as the real reason when the file ends before the frames it
    declares (`stream`: what `video_frames` recorded while the block read it)."""
    try:
        yield
    except ClipError as err:
        why = truncation_reason(stream.get("decoded", 0), stream) if err.kind in ("too-short", "empty") else None
        if why is None:
            raise
        raise ClipError(why, "truncated") from err


def summarize(rows: list[dict]) -> dict:
    """Share of windows per label (faces pooled), the majority label, and no-face windows."""
    labels = [r["label"] for r in rows]
    counts = {lab: labels.count(lab) for lab in sorted(set(labels))}
    ok = {k: v for k, v in counts.items() if k != NO_FACE}
    return {"windows": len(rows), "counts": counts, "majority": max(ok, key=ok.get) if ok else NO_FACE}

"""`vemo predict`: emotions over time in any video, per face, as CSV/JSON, a timeline plot, an annotated video.

Each window of `window_s` seconds (T frames sampled in it, like a training clip) is classified; the
probabilities are smoothed over time per face (exponential moving average) so the label does not
flicker between neighbouring windows. Windows without a face say so instead of guessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vemo.data.loader import model_inputs
from vemo.io import write_text
from vemo.models.registry import fuse_conv_bn, to_channels_last
from vemo.predict.stream import FaceWindows, Frame, video_fps, video_frames
from vemo.training.checkpoint import load_checkpoint, model_from_checkpoint

NO_FACE = "no-face"


class Predictor:
    """A checkpoint ready to classify windows: the model, its labels, frame size, T and statistics."""

    def __init__(self, checkpoint: str | Path, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(checkpoint)
        # channels-last ~1.4x and conv+BN folding ~1.07x faster on CPU (bench/predict.py)
        self.model = to_channels_last(fuse_conv_bn(model_from_checkpoint(ckpt)))
        self.labels: list[str] = list(ckpt["labels"])
        prep = ckpt["config"]["prepare"]
        self.frames, self.size, self.margin = prep["frames"], prep["size"], prep["margin"]
        self.stats = ckpt["stats"]

    @torch.inference_mode()
    def probabilities(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, S, S) uint8 crops -> (B, C) class probabilities."""
        x = model_inputs(torch.from_numpy(clips), self.stats)
        return torch.softmax(self.model(x)["logits"], dim=1).numpy()


def predict_frames(
    frames,
    predictor: Predictor,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    all_faces: bool = False,
    smooth: float = 0.6,
    on_frame=None,
) -> list[dict]:
    """Rows, one per (window, face): start, end, status, label, confidence, p_<class>, smoothed p_<class>.

    `on_frame(frame, current)` is called for every decoded frame with the latest row per face (for
    drawing an annotated video).
    """
    faces = FaceWindows(predictor.frames, predictor.size, predictor.margin, all_faces)
    step = window_s / predictor.frames
    next_sample = next_emit = None  # clocks start at the first frame's time (streams may not start at 0)
    rows: list[dict] = []
    ema: dict[int, np.ndarray] = {}
    current: dict[int, dict] = {}
    for frame in frames:
        if next_sample is None:
            next_sample, next_emit = frame.time, frame.time + window_s - step / 2
        if frame.time + 1e-6 >= next_sample:
            faces.add(frame)
            next_sample = max(next_sample + step, frame.time + step / 2)  # low frame rates: no bursts
            if frame.time + 1e-6 >= next_emit and len(faces.times) == predictor.frames:
                current = _emit(faces, predictor, ema, smooth, rows)
                next_emit = max(next_emit + hop_s, frame.time + hop_s / 2)
        if on_frame is not None:
            on_frame(frame, current)
    if not rows and len(faces.times) >= 2:  # a video shorter than one window: classify what there is
        _emit(faces, predictor, ema, smooth, rows, final=True)
    return rows


def _emit(
    faces: FaceWindows, predictor: Predictor, ema: dict, smooth: float, rows: list[dict], final: bool = False
) -> dict[int, dict]:
    """Classify the current window of every face; append the rows; return them by face id."""
    current = {}
    for w in faces.windows(final):
        current[w.track] = _row(w, predictor, ema, smooth)
        rows.append(current[w.track])
    return current


def _row(w, predictor: Predictor, ema: dict[int, np.ndarray], smooth: float) -> dict:
    row = {"face": w.track, "start": round(w.start, 3), "end": round(w.end, 3), "found": w.found}
    row["box"] = [round(float(v), 1) for v in w.box]
    if w.crops is None:
        ema.pop(w.track, None)  # after a gap, smoothing starts afresh
        return {**row, "status": NO_FACE, "label": NO_FACE, "confidence": None}
    p = predictor.probabilities(w.crops[None])[0]
    s = p if w.track not in ema else smooth * ema[w.track] + (1 - smooth) * p
    ema[w.track] = s
    k = int(s.argmax())
    row.update(status="ok", label=predictor.labels[k], confidence=round(float(s[k]), 4))
    row.update({f"p_{lab}": round(float(v), 4) for lab, v in zip(predictor.labels, p, strict=True)})
    row.update({f"smoothed_{lab}": round(float(v), 4) for lab, v in zip(predictor.labels, s, strict=True)})
    return row


def write_rows(rows: list[dict], labels: list[str], csv_path: Path, json_path: Path, meta: dict) -> None:
    cols = ["face", "start", "end", "status", "label", "confidence", "found"]
    cols += [f"p_{lab}" for lab in labels] + [f"smoothed_{lab}" for lab in labels]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else str(r.get(c, "")) for c in cols))
    write_text(csv_path, "\n".join(lines) + "\n")
    write_text(json_path, json.dumps({**meta, "labels": labels, "windows": rows}, indent=1))


def predict_video(
    source: str | Path,
    predictor: Predictor,
    out_dir: str | Path,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    all_faces: bool = False,
    annotate: str | Path | None = None,
    progress: bool = True,
    name: str | None = None,
) -> dict:
    """Predict one video into out_dir/<name>.csv|.json|.png (and an annotated video if asked); `name`
    defaults to the file's stem."""
    from vemo.predict.annotate import AnnotatedWriter
    from vemo.reporting.plots import plot_timeline

    source, out = Path(source), Path(out_dir)
    writer = AnnotatedWriter(annotate, predictor.labels, video_fps(source)) if annotate else None
    frames = video_frames(source, want_rgb=writer is not None)
    bar = tqdm(desc=source.name, unit="frame", disable=not progress, leave=False)
    decoded = 0

    def on_frame(frame: Frame, current: dict) -> None:
        nonlocal decoded
        decoded += 1
        bar.update()
        if writer is not None:
            writer.write(frame, current)

    try:
        rows = predict_frames(frames, predictor, window_s, hop_s, all_faces, on_frame=on_frame)
    except BaseException:
        if writer is not None:
            writer.abort()  # no half-written video under the requested name
        raise
    finally:
        bar.close()
    if writer is not None:
        writer.close()
    meta = {"video": str(source), "window_s": window_s, "hop_s": hop_s, "frames_decoded": decoded}
    name = name or source.stem
    write_rows(rows, predictor.labels, out / f"{name}.csv", out / f"{name}.json", meta)
    plot_timeline(rows, predictor.labels, out / f"{name}.png", title=source.name)
    return {**meta, "rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    """Share of windows per label (faces pooled), the majority label, and no-face windows."""
    labels = [r["label"] for r in rows]
    counts = {lab: labels.count(lab) for lab in sorted(set(labels))}
    ok = {k: v for k, v in counts.items() if k != NO_FACE}
    return {"windows": len(rows), "counts": counts, "majority": max(ok, key=ok.get) if ok else NO_FACE}

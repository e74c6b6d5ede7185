"""What `vemo predict` does with its arguments: expand inputs, run each video, report, go on past bad files."""

from __future__ import annotations

from pathlib import Path

from vemo.data.crema_d import VIDEO_EXTENSIONS
from vemo.data.video import ClipError
from vemo.predict.run import Predictor, predict_frames, predict_video, summarize, write_rows
from vemo.predict.stream import webcam_frames


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders become their video files (recursively, sorted)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            paths.append(p)
    return paths


def unique_names(videos: list[Path]) -> list[str]:
    """Output names: the file stem, with `-2`, `-3`... when two inputs share one (happy/01.mp4, sad/01.mp4)."""
    seen: dict[str, int] = {}
    names = []
    for v in videos:
        seen[v.stem] = seen.get(v.stem, 0) + 1
        names.append(v.stem if seen[v.stem] == 1 else f"{v.stem}-{seen[v.stem]}")
    return names


def run_predict(
    inputs: list[str],
    checkpoint: str,
    out: str,
    webcam: int | None = None,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    all_faces: bool = False,
    annotate: str | None = None,
    max_seconds: float = 0.0,
    progress: bool = True,
    log=print,
) -> list[dict]:
    predictor = Predictor(checkpoint)
    out_dir = Path(out)
    if webcam is not None:
        rows = predict_frames(webcam_frames(webcam, max_seconds=max_seconds), predictor, window_s, hop_s, all_faces)
        write_rows(rows, predictor.labels, out_dir / "webcam.csv", out_dir / "webcam.json", {"webcam": webcam})
        log(f"webcam {webcam}: {summarize(rows)}")
        return [{"video": f"webcam {webcam}", "rows": rows}]
    videos = expand_inputs(inputs)
    if not videos:
        raise FileNotFoundError(f"no videos found in {' '.join(inputs) or '(no inputs given)'}")
    results, skipped = [], []
    names = unique_names(videos)
    for video, name in zip(videos, names, strict=True):
        target = None
        if annotate:
            target = Path(annotate) / f"{name}.mp4" if len(videos) > 1 else Path(annotate)
        try:
            result = predict_video(video, predictor, out_dir, window_s, hop_s, all_faces, target, progress, name)
        except (ClipError, FileNotFoundError, OSError) as err:
            skipped.append((video, str(err)))
            log(f"skipped {video}: {err}")
            continue
        s = result["summary"]
        counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
        log(f"{video.name}: {s['majority']} ({s['windows']} windows: {counts})")
        results.append(result)
    log(f"predicted {len(results)} video(s), skipped {len(skipped)}; outputs in {out_dir}")
    if not results:
        raise ClipError("no video could be read: " + "; ".join(f"{v.name}: {e}" for v, e in skipped))
    return results

"""`vemo.predict(source)`: emotions per window and face as a pandas DataFrame, for notebooks and scripts.

    >>> import vemo
    >>> df = vemo.predict("clip.mp4")                # or a folder, a list of paths, an image, a numpy array
    >>> df.groupby("source")["label"].agg(lambda s: s.mode()[0])

Quiet by default (warnings go to the `vemo` logger, no progress bars) and writes no files; the
`vemo predict` command is this function plus files on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vemo.data.sources.fer2013 import load_still
from vemo.data.sources.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from vemo.data.sources.video import ClipError, unexpected
from vemo.predict.run import CLIP, PARTIAL, Predictor, check_window, predict_frames, predict_image, predict_video
from vemo.predict.stream import Frame
from vemo.predict.table import records, to_frame

log = logging.getLogger("vemo.predict")

Source = str | Path | np.ndarray


@dataclass
class Item:
    """One input: a video or image file, or frames given as an array; `name` fills the `source` column."""

    name: str
    path: Path | None = None
    array: np.ndarray | None = None
    problem: str | None = None  # why a file found in a folder cannot be read (reported as skipped)

    @property
    def is_image(self) -> bool:
        if self.array is not None:
            return _array_is_image(self.array)
        return self.path.suffix.lower() in IMAGE_EXTENSIONS


def expand(source: Source | list[Source]) -> list[Item]:
    """Inputs as items: files as given, folders as their files (recursively, sorted; hidden ones left
    out), arrays as they are. A folder's file of another type becomes an item with a `problem`, so a
    run reports it as skipped instead of passing over it in silence. Raises FileNotFoundError when a
    path does not exist or no video or image is found."""
    sources = source if isinstance(source, list | tuple) else [source]
    items: list[Item] = []
    for k, s in enumerate(sources):
        if isinstance(s, np.ndarray):
            items.append(Item(f"array-{k}" if len(sources) > 1 else "array", array=s))
            continue
        p = Path(s)
        if p.is_dir():
            items += [_folder_item(f) for f in sorted(p.rglob("*")) if _listed(f, p)]
        elif p.exists() or p.is_symlink():
            items.append(Item(str(p), p))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if all(it.problem for it in items):
        others = f" ({len(items)} other files, e.g. {items[0].name})" if items else ""
        raise FileNotFoundError(
            f"no videos or images found in {', '.join(map(str, sources)) or '(no inputs)'}{others}; "
            f"vemo reads {' '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)}"
        )
    return items


def _listed(f: Path, folder: Path) -> bool:
    """A file (or broken link) under `folder` that no hidden folder or name hides (.DS_Store, .git/...)."""
    return not f.is_dir() and not any(part.startswith(".") for part in f.relative_to(folder).parts)


def _folder_item(f: Path) -> Item:
    if f.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
        return Item(str(f), f)  # a broken link among them is named as missing when it is read
    return Item(str(f), f, problem=f"not a video or image vemo reads ({f.suffix or 'no extension'})")


def load_predictor(
    checkpoint: str | Path | Predictor = "default", device: str = "cpu", preprocessing: dict | None = None
) -> Predictor:
    """A Predictor from a checkpoint path or shipped name (face settings: the checkpoint's, except those in
    `preprocessing`); a Predictor is passed through as it is (load once, reuse)."""
    if isinstance(checkpoint, Predictor):
        return checkpoint
    return Predictor(checkpoint, device=device, preprocessing=preprocessing)


def predict_item(
    item: Item,
    predictor: Predictor,
    window: float | str = 2.0,
    hop: float = 0.5,
    all_faces: bool = False,
    fps: float = 30.0,
    annotate: str | Path | None = None,
    progress: bool = False,
) -> tuple[list[dict], dict]:
    """Rows of one input and facts about it; raises ClipError (with the reason) for unusable inputs."""
    if item.problem:
        raise ClipError(item.problem, "unsupported")
    if item.is_image:
        gray = _gray(item.array) if item.array is not None else load_still(str(item.path))
        return predict_image(gray, predictor, all_faces), {"frames_decoded": 1, "image": True}
    if window == CLIP and item.array is not None:
        raise ValueError("window='clip' takes video files (it decodes them as `vemo prepare` does)")
    if item.array is not None:
        try:
            rows = predict_frames(array_frames(item.array, fps), predictor, window, hop, all_faces)
        except ClipError as err:  # (3, H, W): three frames, or one RGB image with its channels first?
            if err.kind != "too-short" or item.array.ndim != 3 or len(item.array) not in (3, 4):
                raise
            hint = "; if it is one image with its channels first, pass a.transpose(1, 2, 0)"
            raise ClipError(f"{err}{hint}", err.kind) from err
        return rows, {"frames_decoded": len(item.array), "fps": fps}
    try:
        return predict_video(item.path, predictor, window, hop, all_faces, annotate, progress)
    except ClipError as err:  # given by name, so tried as a video whatever its extension; say so if it is not one
        suffix = item.path.suffix.lower()
        if suffix in VIDEO_EXTENSIONS or err.kind not in ("corrupt", "empty"):
            raise
        kind = f"a {suffix} file" if suffix else "a file without an extension"
        raise ClipError(f"{kind}, not a video or image vemo reads (read as a video: {err})", err.kind) from err


def predict(
    source: Source | list[Source],
    checkpoint: str | Path | Predictor = "default",
    *,
    window: float | str = 2.0,
    hop: float = 0.5,
    all_faces: bool = False,
    fps: float = 30.0,
    device: str = "cpu",
    progress: bool = False,
    preprocessing: dict | None = None,
):
    """Emotions in videos, images or frames as a pandas DataFrame, one row per window per face.

    source: a video or image file, a folder (its videos and images, recursively), a list of these, or
        frames as a numpy uint8 array (T, H, W), (T, H, W, 1) or (T, H, W, 3) RGB (one frame, (H, W),
        (H, W, 1) or (H, W, 3), is an image); `fps` gives an array's frame rate.
    checkpoint: "default" (the shipped FER2013 model), a .pt from `vemo train`, or a loaded `Predictor`.
    window, hop: seconds per classified window and between window starts (videos and arrays);
        window="clip": one row per video, its frames sampled exactly as `vemo evaluate` samples a clip.
    all_faces: every face, not only the largest.
    device: "cpu" or "cuda".
    preprocessing: face settings instead of those the model was trained with (face, detect_frames,
        margin, frames), e.g. {"margin": 0.2}; by default the checkpoint's own.

    Columns: source, face, start, end, label, confidence, p_<class> (calibrated probabilities of the
    window), x, y, w, h (face box in pixels), status ("ok" or "no-face"), found (sampled frames with
    the face detected), smoothed_<class> (the moving average `label` and `confidence` come from).
    An input that cannot be read raises ClipError when it is the only one; among several it is skipped
    with a warning and listed in `df.attrs["skipped"]` as (source, reason) pairs. A video that ends
    before the frames it declares (a partial copy) keeps the windows that decoded, with a warning, and
    is listed in `df.attrs["truncated"]` the same way.
    """
    check_window(window, hop)
    predictor = load_predictor(checkpoint, device, preprocessing)
    items = expand(source)
    recs: list[dict] = []
    skipped: list[tuple[str, str]] = []
    truncated: list[tuple[str, str]] = []
    for item in items:
        try:
            rows, facts = predict_item(item, predictor, window, hop, all_faces, fps, progress=progress)
        except ImportError:  # a missing package is no fault of this input: stop
            raise
        except Exception as err:
            reason = skip_reason(err, item, alone=len(items) == 1)
            log.warning("skipped %s: %s", item.name, reason)
            skipped.append((item.name, reason))
            continue
        if "truncated" in facts:
            log.warning("%s: %s (%s)", item.name, facts["truncated"], PARTIAL)
            truncated.append((item.name, facts["truncated"]))
        recs += records(rows, predictor.labels, item.name)
    if not recs:
        raise ClipError("nothing could be predicted: " + "; ".join(f"{n}: {e}" for n, e in skipped))
    df = to_frame(recs, predictor.labels)
    df.attrs.update(labels=list(predictor.labels), skipped=skipped, truncated=truncated)
    return df


def skip_reason(err: Exception, item: Item, alone: bool = False) -> str:
    """Why an input among several is skipped. An input given alone raises instead: a ClipError naming it
    for a failure vemo foresees (unreadable, no frames, ...), the error itself otherwise (its traceback
    is what helps)."""
    foreseen = isinstance(err, ClipError | OSError)
    if alone and foreseen:
        raise ClipError(f"{item.name}: {err}", getattr(err, "kind", "unreadable")) from err
    if alone:
        raise err
    return str(err if foreseen else unexpected(err))


CHANNELS = (1, 3, 4)  # a last axis of this size is a frame's channels (gray, RGB, RGBA), never its width


def _array_is_image(a: np.ndarray) -> bool:
    """(H, W) and (H, W, 1|3|4) are one image; (1, H, W[, C]) is one frame, also an image."""
    return a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in CHANNELS) or (a.ndim in (3, 4) and len(a) == 1)


def _gray(a: np.ndarray) -> np.ndarray:
    """One frame (H, W), (H, W, 1), (H, W, 3|4) RGB(A) or any of these as (1, ...), as (H, W) uint8 gray."""
    if a.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (got {a.dtype}); for floats in [0, 1] pass (a * 255).astype('uint8')")
    shape = a.shape
    if a.ndim == 4 or (a.ndim == 3 and a.shape[-1] not in CHANNELS and len(a) == 1):
        a = a[0]  # a (1, H, W[, C]) "video" of one frame
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[-1] in CHANNELS:
        return cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)
    if a.ndim != 2:
        raise ValueError(f"a frame must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {shape}")
    return np.ascontiguousarray(a)


def array_frames(a: np.ndarray, fps: float = 30.0) -> Iterator[Frame]:
    """(T, H, W) or (T, H, W, 1|3|4) uint8 frames as a stream at `fps` frames per second."""
    if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] not in CHANNELS):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, 1|3|4), got shape {a.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive (got {fps})")
    for i, f in enumerate(a):
        yield Frame(i, i / fps, _gray(f))

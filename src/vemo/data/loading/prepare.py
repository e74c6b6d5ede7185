"""`vemo prepare`: records -> face-cropped T x S x S uint8 clips, cached on disk with a manifest.

The cache is a folder holding `frames.npy` (N, T, S, S uint8, memory-mappable: a CREMA-D-sized set is
~270 MB and is never loaded twice) and `manifest.json` (per clip: source, label, actor, split, whether
the face was detected; skipped files with reasons; normalisation statistics of the training split).
Its name is a hash of the preprocessing settings and of the source files (path, size, mtime, and
whether the file can be opened: a broken link or missing permission that is fixed since changes the
key, so files skipped for such reasons are looked at again). It is built in a temporary folder and
renamed into place, so an interrupted prepare never leaves a half cache that looks complete; the
temporary folders of killed prepares are removed by the next one. Only the T sampled frames of a clip
are kept in memory (`vemo.data.sources.video.sample_clip`), so a clip of any length prepares in bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vemo.config import Config, PrepareConfig, copy_preprocessing
from vemo.data.loading.leakage import cross_split_duplicates, duplicates_report, mixed_groups
from vemo.data.preprocessing.face import crop_square, track_faces
from vemo.data.preprocessing.split import TooFewGroups, assign_splits
from vemo.data.sources.datasets import get_reader, read_dataset
from vemo.data.sources.fer2013 import csv_row, load_still
from vemo.data.sources.records import Record, Skipped, access_problem
from vemo.data.sources.video import ClipError, sample_clip, unexpected
from vemo.io import remove_stale_temps

# 6: padded-try boxes kept inside the picture, centre-crop fallback = the whole shorter side;
# 5: faces that fill the frame found (padded second try); 4: portrait videos decoded upright;
# 3: truncated files skipped, FER2013 CSV line by line. (FER2013 stills are never detected on: their
# caches change with the version only.)
CACHE_VERSION = 6
SHOWN_SKIPPED = 20  # skipped files named on the console; the manifest lists all of them
# Settings that change the cached content; workers and cache location do not.
KEYED_SETTINGS = (
    "dataset",
    "frames",
    "size",
    "face",
    "detect_frames",
    "margin",
    "target",
    "folds",
    "fold",
    "val_fraction",
    "test_fraction",
    "seed",
    "dedupe",
)


class PrepareError(RuntimeError):
    """Nothing usable came out of a prepare run; the message says why."""


class DamagedCache(PrepareError):
    """A cache file that cannot be read (cut short, overwritten): `file` and `why`."""

    def __init__(self, file: Path, why: str):
        super().__init__(f"{file}: {why}; delete {file.parent} and prepare again")
        self.file, self.why = file, why


@dataclass
class Prepared:
    """A prepared dataset: the frames array (memory-mapped) and its manifest.

    `manifest` is the parsed manifest.json; code outside this module reads it through the typed
    properties below (`settings`, `stats`, `labels`, `kind`, `items`, `skipped`, `counts`, `leakage`)."""

    path: Path
    manifest: dict

    @property
    def settings(self) -> PrepareConfig:
        """The preprocessing and split settings the cache was made with (`root` absolute); settings added
        to PrepareConfig since take their defaults."""
        saved = self.manifest["settings"]
        return PrepareConfig(**{f.name: saved[f.name] for f in fields(PrepareConfig) if f.name in saved})

    @property
    def stats(self) -> dict[str, float]:
        """Normalisation statistics of the training split (mean, std of pixel values / 255)."""
        return dict(self.manifest["stats"])

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    @property
    def kind(self) -> str:
        """ "clips" (frames.npy is N x T x S x S) or "stills" (N x 1 x S x S, sequences made at load time)."""
        return self.manifest.get("kind", "clips")

    @property
    def items(self) -> list[dict]:
        """Per clip: source, label, group (actor), split, face_detected, ..."""
        return self.manifest["items"]

    @property
    def skipped(self) -> list[dict]:
        """Files left out, each with source, reason and kind."""
        return self.manifest["skipped"]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Clips per label per split."""
        return self.manifest["counts"]

    @property
    def leakage(self) -> dict:
        """What the leakage guard found (pixel-identical items across splits)."""
        return self.manifest["leakage"]

    def apply_preprocessing(self, cfg: Config | PrepareConfig, keep: Iterable[str] = ()) -> PrepareConfig:
        """Copy the cache's preprocessing and split settings into `cfg` (`vemo.config.copy_preprocessing`:
        workers, cache_dir and `keep` stay the caller's)."""
        return copy_preprocessing(self.settings, cfg, keep)

    def frames(self) -> np.ndarray:
        return np.load(self.path / "frames.npy", mmap_mode="r")

    def indices(self, split: str) -> np.ndarray:
        if split == "all":
            return np.arange(len(self.items))
        return np.array([i for i, it in enumerate(self.items) if it["split"] == split], dtype=np.int64)

    def targets(self) -> np.ndarray:
        index = {lab: k for k, lab in enumerate(self.labels)}
        return np.array([index[it["label"]] for it in self.items], dtype=np.int64)


def process_clip(source: str, cfg: PrepareConfig) -> tuple[np.ndarray, dict]:
    """Decode, sample T frames uniformly, locate the face, crop and resize. Raises ClipError.

    Returns the (T, S, S) clip and facts for the manifest: whether a face was found, how many frames
    the source had (fewer than T: frames were repeated, `padded`).
    """
    sampled = sample_clip(source, cfg.frames)
    track = track_faces(sampled.frames, cfg.face, cfg.detect_frames)
    crops = [crop_square(f, b, cfg.size, cfg.margin) for f, b in zip(sampled.frames, track.boxes, strict=True)]
    n = sampled.n_frames
    return np.stack(crops), {"face_detected": track.detected, "n_frames": n, "padded": n < cfg.frames}


def process_still(source: str, cfg: PrepareConfig) -> tuple[np.ndarray, dict]:
    """A face image resized to S x S, as a (1, S, S) clip; sequences are made at load time (preprocessing/stills.py)."""
    image = load_still(source)
    interp = cv2.INTER_AREA if min(image.shape) > cfg.size else cv2.INTER_LINEAR
    still = cv2.resize(image, (cfg.size, cfg.size), interpolation=interp)
    return still[None], {"face_detected": False, "n_frames": 1, "padded": False}


PROCESSORS = {"clips": process_clip, "stills": process_still}


def _work(job: tuple[int, str, PrepareConfig, str]) -> tuple[int, np.ndarray | None, dict, str, str]:
    i, source, cfg, kind = job
    try:
        clip, info = PROCESSORS[kind](source, cfg)
        return i, clip, info, "", ""
    except ClipError as err:
        return i, None, {}, str(err), err.kind
    except ImportError:  # a missing package is no fault of this file: stop, do not skip every file
        raise
    except Exception as err:  # a batch run goes on; the manifest says what went wrong
        err = unexpected(err)
        return i, None, {}, str(err), err.kind


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def _file_of(source: str) -> str:
    return csv_row(source)[0]  # a CSV row's file is the CSV


def _state(path: str) -> str:
    """What the cache key knows of a file: size, mtime and whether it can be read, or the error stat
    gives (a broken link); for a frames folder, also the same of every file in it."""
    try:
        st = os.stat(path)
    except OSError as err:
        return f"error {err.errno}"
    state = f"{st.st_size}|{st.st_mtime_ns}|{os.access(path, os.R_OK)}"
    if stat.S_ISDIR(st.st_mode):
        try:
            inside = sorted(f"{e.name}|{_state(e.path)}" for e in os.scandir(path) if not e.is_dir())
        except OSError as err:
            inside = [f"error {err.errno}"]
        state += "|" + hashlib.sha256("\n".join(inside).encode()).hexdigest()
    return state


def check_sources(records: list[Record]) -> tuple[list[Record], list[Skipped], dict[str, str]]:
    """Records whose file can be opened, the others as Skipped with the reason (a dangling or looping
    link, no permission: one such file never stops the batch), and each file's state for the cache key."""
    states: dict[str, str] = {}
    problems: dict[str, Skipped | None] = {}
    usable: list[Record] = []
    unusable: list[Skipped] = []
    for r in records:
        path = _file_of(r.source)
        if path not in states:
            states[path], problems[path] = _state(path), access_problem(path)
        if (problem := problems[path]) is None:
            usable.append(r)
        else:
            unusable.append(Skipped(r.source, problem.reason, problem.kind))
    return usable, unusable, states


def cache_key(
    cfg: PrepareConfig, records: list[Record], skipped: Sequence[Skipped] = (), states: dict[str, str] | None = None
) -> str:
    """Settings, then every record with its file's state, then every file skipped while reading with its
    state: a skipped file that is fixed (or a new one) changes the key, so it is looked at again."""
    states = {} if states is None else states

    def state_of(source: str) -> str:
        path = _file_of(source)
        if path not in states:
            states[path] = _state(path)
        return states[path]

    h = hashlib.sha256()
    h.update(json.dumps({k: getattr(cfg, k) for k in KEYED_SETTINGS}, sort_keys=True).encode())
    h.update(str(CACHE_VERSION).encode())
    for r in records:
        h.update(f"{r.source}|{state_of(r.source)}|{r.label}|{r.group}|{r.split}\n".encode())
    for s in skipped:
        h.update(f"skipped {s.source}|{state_of(s.source)}\n".encode())
    return h.hexdigest()[:16]


def summarize(n_ok: int, skipped: list[dict]) -> str:
    """`prepared 7398, skipped 44: 40 no-face, 4 corrupt`"""
    if not skipped:
        return f"prepared {n_ok}, skipped 0"
    kinds = Counter(s["kind"] for s in skipped)
    detail = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    return f"prepared {n_ok}, skipped {len(skipped)}: {detail}"


def _first(lines: list[str], limit: int, rest: str) -> list[str]:
    """The first `limit` console lines, then one saying how many more there are and where (`rest`)."""
    more = [f"  ... and {len(lines) - limit} more; {rest}"] if len(lines) > limit else []
    return lines[:limit] + more


def skipped_lines(skipped: list[dict], manifest: Path, limit: int = SHOWN_SKIPPED) -> list[str]:
    """One line per skipped file with its reason, the first `limit`; the rest are in the manifest."""
    lines = [f"  skipped {s['source']}: {s['reason']}" for s in skipped]
    return _first(lines, limit, f"all {len(skipped)} are listed in {manifest}")


def fallback_lines(items: list[dict], manifest: Path, limit: int = SHOWN_SKIPPED) -> list[str]:
    """The clips kept with a centre crop because no face was found in them (a crop that may show no
    face), the first `limit`; every clip's `face_detected` is in the manifest."""
    lines = [f"  no face found in {it['source']}: centre crop used" for it in items if not it["face_detected"]]
    return _first(lines, limit, f"each clip's face_detected is in {manifest}")


def _run_jobs(records: list[Record], cfg: PrepareConfig, kind: str, progress: bool):
    jobs = [(i, r.source, cfg, kind) for i, r in enumerate(records)]
    # Stills are tiny and a CSV would be parsed once per worker: one process is faster for them.
    workers = 1 if kind == "stills" else cfg.workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="prepare", unit="image" if kind == "stills" else "clip", disable=not progress)
    if workers == 1 or len(jobs) < 8:
        for job in jobs:
            yield _work(job)
            bar.update()
    else:
        # spawn: the parent may hold torch threads, which fork does not copy safely.
        with get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            for result in pool.imap_unordered(_work, jobs, chunksize=4):
                yield result
                bar.update()
    bar.close()


def _train_stats(frames: np.ndarray, train_idx: np.ndarray) -> dict[str, float]:
    """Mean and std of training pixels (in 0-1 units), on at most 2,000 clips for speed."""
    if len(train_idx) == 0:
        return {"mean": 0.5, "std": 0.25}
    pick = train_idx[np.linspace(0, len(train_idx) - 1, min(2000, len(train_idx))).astype(int)]
    x = frames[np.sort(pick)].astype(np.float64) / 255.0
    return {"mean": float(x.mean()), "std": float(max(x.std(), 1e-3))}


def _build(records: list[Record], cfg: PrepareConfig, kind: str, tmp: Path, progress: bool, log) -> dict:
    n, shape = len(records), (1 if kind == "stills" else cfg.frames, cfg.size, cfg.size)
    raw = np.lib.format.open_memmap(tmp / "raw.npy", mode="w+", dtype=np.uint8, shape=(n, *shape))
    ok = np.zeros(n, dtype=bool)
    infos: dict[int, dict] = {}
    errors: dict[int, tuple[str, str]] = {}
    for i, clip, info, reason, why in _run_jobs(records, cfg, kind, progress):
        if clip is None:
            errors[i] = (reason, why)
        else:
            raw[i], ok[i], infos[i] = clip, True, info
    keep = np.flatnonzero(ok)
    frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.uint8, shape=(len(keep), *shape))
    for start in range(0, len(keep), 512):
        frames[start : start + 512] = raw[keep[start : start + 512]]
    frames.flush()
    del raw
    (tmp / "raw.npy").unlink()
    skipped = [{"source": records[i].source, "reason": m, "kind": k} for i, (m, k) in sorted(errors.items())]
    if not len(keep):
        reasons = Counter(s["kind"] for s in skipped).most_common()
        first = skipped[0]
        raise PrepareError(
            f"no clip in {cfg.root} was usable: "
            + ", ".join(f"{n} {k}" for k, n in reasons)
            + f" (e.g. {first['source']}: {first['reason']})"
        )
    usable = [records[i] for i in keep]
    splits = _split(usable, cfg, log)  # split only what is usable: stratification sees the clips used
    leakage, drop = _guard_leakage(usable, splits, frames, cfg, "images" if kind == "stills" else "clips", log)
    if drop:
        skipped += [{"source": usable[j].source, "reason": why, "kind": "duplicate"} for j, why in drop.items()]
        rest = [j for j in range(len(keep)) if j not in drop]
        frames = _take_rows(frames, rest, tmp)
        keep, usable, splits = keep[rest], [usable[j] for j in rest], [splits[j] for j in rest]
    items = [
        {
            "source": r.source,
            "label": r.label,
            "group": r.group,
            "split": split,
            "prescribed": r.split is not None,  # the dataset's own files chose the split (FER2013), not vemo
            **infos[i],
            "meta": r.meta,
        }
        for i, r, split in zip(keep, usable, splits, strict=True)
    ]
    train_idx = np.array([k for k, it in enumerate(items) if it["split"] == "train"], dtype=np.int64)
    return {"items": items, "skipped": skipped, "stats": _train_stats(frames, train_idx), "leakage": leakage}


def _guard_leakage(records, splits, frames, cfg: PrepareConfig, noun: str, log) -> tuple[dict, dict[int, str]]:
    """Check the split for leaks: raise on a group split across splits (a bug); report identical pixels in
    train and val/test loudly (a dataset fact), and with `cfg.dedupe` drop the non-train copies.

    Returns the manifest's "leakage" entry and {index to drop: reason} (empty unless dedupe).
    """
    mixed = mixed_groups(records, splits)
    if mixed:
        example = ", ".join(f"{g!r} in {'+'.join(s)}" for g, s in list(mixed.items())[:5])
        raise PrepareError(f"bug: {len(mixed)} group(s) assigned to more than one split ({example})")
    return duplicates_report(records, splits, cross_split_duplicates(splits, frames), cfg.dedupe, noun, log)


def _take_rows(frames: np.ndarray, rows: list[int], tmp: Path) -> np.ndarray:
    """frames.npy rewritten with only `rows`, in order (the items dropped by dedupe leave no hole)."""
    kept = np.lib.format.open_memmap(tmp / "kept.npy", mode="w+", dtype=np.uint8, shape=(len(rows), *frames.shape[1:]))
    for start in range(0, len(rows), 512):
        kept[start : start + 512] = frames[rows[start : start + 512]]
    kept.flush()
    del kept
    os.replace(tmp / "kept.npy", tmp / "frames.npy")
    return np.load(tmp / "frames.npy", mmap_mode="r")


def _split(records: list[Record], cfg: PrepareConfig, log) -> list[str]:
    """Dataset splits where prescribed, actor-independent ones otherwise; too few actors: all test."""
    try:
        return assign_splits(records, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.folds, cfg.fold)
    except TooFewGroups as err:  # other split errors are configuration mistakes and stop the run
        log(f"warning: {err}; all {len(records)} clips go to the test split (usable for evaluation only)")
        return [r.split or "test" for r in records]


def _reusable(final: Path, log) -> Prepared | None:
    """The cache at `final` if there is a complete, readable one; a damaged one is deleted, said so."""
    if not (final / "manifest.json").exists():
        return None
    try:
        prepared = load_prepared(final)
    except DamagedCache as err:
        log(f"warning: {err.file}: {err.why}; preparing the cache again")
        shutil.rmtree(final, ignore_errors=True)
        return None
    skipped = prepared.skipped
    log(f"reusing cache {final} ({summarize(len(prepared.items), skipped)})")
    for line in skipped_lines(skipped, final / "manifest.json"):
        log(line)
    kept = prepared.leakage.get("duplicates_across_splits", 0) - prepared.leakage.get("dropped", 0)
    if kept > 0:  # said when the cache was made; said again, as every run on it is read with them in
        log(f"warning: {kept} val/test items repeat a training item's pixels (kept; prepare.dedupe=true drops them)")
    return prepared


def _usable_records(cfg: PrepareConfig) -> tuple[list[Record], list[Skipped], tuple[str, ...], dict[str, str]]:
    """The dataset's records that can be read, the ones that cannot (with why), its labels and the files'
    states (size and time, for the cache key); no usable file at all is an error naming the first reasons."""
    records, unreadable, labels = read_dataset(cfg)
    records, inaccessible, states = check_sources(records)
    unreadable = unreadable + inaccessible
    if not records:
        reasons = (
            "; ".join(f"{s.source}: {s.reason}" for s in unreadable[:5]) or f"expected {get_reader(cfg.dataset).layout}"
        )
        raise PrepareError(f"{cfg.root}: no usable {cfg.dataset} files found ({reasons})")
    return records, unreadable, labels, states


def _publish(tmp: Path, final: Path) -> None:
    """Move the finished cache `tmp` to `final` in one rename, so a reader never sees half a cache. A
    `final` that already has its manifest was published by a concurrent prepare of the same data (same
    key, so the same cache) and is kept; one without a manifest is debris and is replaced."""
    if final.exists() and not (final / "manifest.json").exists():
        shutil.rmtree(final)  # a stale folder without a manifest is not a cache
    try:
        if not final.exists():
            os.replace(tmp, final)
    except OSError:
        if not (final / "manifest.json").exists():
            raise


def _report(prepared: Prepared, log) -> None:
    """What was cached, what was skipped and where faces were not found, each skip with its reason."""
    manifest = prepared.path / "manifest.json"
    log(f"{summarize(len(prepared.items), prepared.skipped)}; {_face_summary(prepared)}; cache {prepared.path}")
    for line in skipped_lines(prepared.skipped, manifest):
        log(line)
    if prepared.kind == "clips":  # stills are face crops already: no detection ran
        for line in fallback_lines(prepared.items, manifest):
            log(line)


def prepare(cfg: PrepareConfig, progress: bool = True, log=print) -> Prepared:
    """Read, split, crop and cache a dataset; reuse the cache when settings and files are unchanged."""
    kind = get_reader(cfg.dataset).kind
    records, unreadable, labels, states = _usable_records(cfg)
    if not 10 <= cfg.frames <= 20:
        log(f"warning: T={cfg.frames} frames per clip is outside the 10-20 range vemo is designed for")
    final = Path(cfg.cache_dir) / f"{cfg.dataset}-{cache_key(cfg, records, unreadable, states)}"
    if (prepared := _reusable(final, log)) is not None:
        return prepared
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps(final.parent):
        log(f"note: removed {stale}, left by a prepare that was killed")
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        built = _build(records, cfg, kind, tmp, progress, log)
        manifest = {
            "version": CACHE_VERSION,
            # the root as an absolute path, so a checkpoint knows its data from any working directory
            "settings": {**asdict(cfg), "root": str(Path(cfg.root).resolve())},
            "kind": kind,
            "labels": list(labels),
            "items": built["items"],
            "skipped": [asdict(s) for s in unreadable] + built["skipped"],
            "stats": built["stats"],
            "leakage": built["leakage"],
            "counts": split_counts(built["items"]),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prepared = load_prepared(final)
    _report(prepared, log)
    return prepared


def _face_summary(prepared: Prepared) -> str:
    if prepared.kind == "stills":
        return "face images used as they are (no detection)"
    n_fallback = sum(not it["face_detected"] for it in prepared.items)
    n_padded = sum(it.get("padded", False) for it in prepared.items)
    padded = f", {n_padded} shorter than T={prepared.settings.frames} (frames repeated)" if n_padded else ""
    return f"face found in {len(prepared.items) - n_fallback}, centre-crop fallback in {n_fallback}{padded}"


def split_counts(items: list[dict]) -> dict[str, dict[str, int]]:
    """{split: {label: items}}, as a cache's manifest records them."""
    out: dict[str, dict[str, int]] = {}
    for it in items:
        out.setdefault(it["split"], Counter())[it["label"]] += 1  # type: ignore[index]
    return {s: dict(sorted(c.items())) for s, c in sorted(out.items())}


def load_prepared(path: str | Path) -> Prepared:
    """A prepared cache, checked to be whole: a damaged manifest.json or frames.npy (a disk filled up,
    a file cut short by a copy) is a PrepareError naming the file, not a traceback later on."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{path}: not a prepared dataset (no manifest.json); run `vemo prepare` first")
    try:
        manifest = json.loads(manifest_path.read_text())
        n_items = len(manifest["items"])
    except (ValueError, KeyError, TypeError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DamagedCache(manifest_path, f"damaged cache manifest ({type(err).__name__}: {err})") from None
    prepared = Prepared(path, manifest)
    try:
        rows = len(prepared.frames())
    except (ValueError, OSError) as err:
        raise DamagedCache(path / "frames.npy", f"damaged cache file ({err})") from None
    if rows != n_items:
        raise DamagedCache(path / "frames.npy", f"holds {rows} clips but the manifest lists {n_items}")
    return prepared

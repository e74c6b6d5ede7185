"""Writing the synthetic dataset to disk, exactly like CREMA-D.

Why it exists: vemo's whole pipeline (decode -> face crop -> CNN -> autoencoder -> LSTM) must run with
nothing downloaded, and the same reader must serve synthetic and real data. So `synthesize` writes
real FLV files named `VideoFlash/{actor}_{sentence}_{EMO}_{LVL}.flv`, a `VideoDemographics.csv` with
CREMA-D's header, and `synth.json` with the config used. `synth.json` also marks the folder as made by
`vemo synth`: rendering deletes stale clips and rewrites VideoDemographics.csv, so a folder holding
files but no marker (a real dataset, say) is refused rather than overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import asdict
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from vemo.config import EMOTIONS, LEVELS, SynthConfig
from vemo.data.synth.params import actor_identity, clip_name
from vemo.data.synth.render import render_clip
from vemo.io import OutputError

VERSION = 1  # bump when the renderer (params.py, render.py) changes, so an older folder is re-rendered
CLIP_RE = re.compile(r"^\d{4}_[A-Z]{3}_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)\.flv$")


def _encode(frames: np.ndarray, path: Path, fps: float) -> None:
    """FLV1 (Sorenson) in FLV, like CREMA-D. Quantiser 3-8: faces stay crisp at 160x120 (PSNR ~34 dB, most
    of the loss is 4:2:0 chroma) at ~25 kB per 2 s clip. Written under a temporary name in the same folder
    and renamed, so a crash never leaves a half file under the final name."""
    tmp = path.with_name(path.stem + ".tmp.flv")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(tmp), "w", format="flv") as out:
        st = out.add_stream("flv", rate=rate, options={"qmin": "3", "qmax": "8"})
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        st.bit_rate = 500_000
        st.thread_count = 1  # clips are rendered in parallel instead; one thread keeps encoding reproducible
        for img in frames:
            out.mux(st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")))
        out.mux(st.encode())
    os.replace(tmp, path)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the worker processes; no oversubscription


def _render_job(job: tuple[SynthConfig, int, str, str, str, str]) -> str:
    cfg, actor, sentence, emotion, level, path = job
    _encode(render_clip(cfg, actor, sentence, emotion, level), Path(path), cfg.fps)
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _demographics(cfg: SynthConfig) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
    for actor in range(cfg.first_actor, cfg.first_actor + cfg.n_actors):
        I = actor_identity(cfg, actor)
        writer.writerow([actor, I.age, I.sex, I.race, I.ethnicity])
    return buf.getvalue()


def _manifest(cfg: SynthConfig) -> dict:
    return {"generator": "vemo.data.synth", "version": VERSION, "config": asdict(cfg)}


def _check(cfg: SynthConfig) -> None:
    """Reject a config whose clips could not carry CREMA-D names, before anything on disk is touched."""
    bad_levels = [lv for lv in cfg.levels if lv not in LEVELS]
    bad_sentences = [s for s in cfg.sentences if not re.fullmatch(r"[A-Z]{3}", s)]
    last = cfg.first_actor + cfg.n_actors - 1
    if bad_levels or bad_sentences or cfg.n_actors < 1 or cfg.first_actor < 0 or last > 9999:
        raise ValueError(
            f"synth config cannot produce CREMA-D names: levels {bad_levels} (known {LEVELS}), "
            f"sentences {bad_sentences} (need 3 capitals), actors {cfg.first_actor}..{last} (need 0..9999)"
        )


def _marker(out: Path) -> dict | None:
    """The folder's synth.json if `vemo synth` wrote it, else None."""
    try:
        meta = json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == _manifest(SynthConfig())["generator"] else None


def _check_ours(out: Path) -> None:
    """Refuse a folder `vemo synth` did not make (no synth.json marker) that holds any file: rendering
    would delete its clips and replace its VideoDemographics.csv. A new or empty folder is fine."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if not out.exists() or _marker(out) is not None:
        return
    example = next((p for p in out.rglob("*") if not p.is_dir()), None)
    if example is not None:
        raise OutputError(
            f"{out}: not a folder made by `vemo synth` (no synth.json) and it holds files (e.g. "
            f"{example.relative_to(out)}): synth would delete or replace them; give a new or empty folder"
        )


def _prepare_folder(out: Path, cfg: SynthConfig) -> bool:
    """Make `out/VideoFlash`; True if clips already there may be kept (same config and version).
    Otherwise stale clips are deleted first, so a folder never mixes two configs. The marker is
    replaced, never removed, so a folder interrupted mid-way is still recognised as ours."""
    _check_ours(out)
    video = out / "VideoFlash"
    video.mkdir(parents=True, exist_ok=True)
    for tmp in video.glob("*.tmp.flv"):
        tmp.unlink()
    meta = out / "synth.json"
    keep = _marker(out) == json.loads(json.dumps(_manifest(cfg)))
    if not keep:
        for old in video.iterdir():
            if CLIP_RE.match(old.name):
                old.unlink()
        _write_atomic(meta, json.dumps(_manifest(cfg), indent=2) + "\n")
    return keep


def synthesize(out_dir: str | Path, cfg: SynthConfig, workers: int = 0, progress: bool = True) -> list[Path]:
    """Render the dataset; returns the clip paths in sorted order.

    Clips already in `out_dir` are kept only if its synth.json records this very config (an interrupted
    run resumes); otherwise they are deleted and re-rendered. `workers` > 1 uses 'spawn' processes, so a
    calling script needs the usual `if __name__ == "__main__":` guard."""
    _check(cfg)
    out = Path(out_dir)
    keep = _prepare_folder(out, cfg)
    _write_atomic(out / "VideoDemographics.csv", _demographics(cfg))
    paths, jobs = [], []
    for actor in range(cfg.first_actor, cfg.first_actor + cfg.n_actors):
        for sentence in cfg.sentences:
            for emotion in EMOTIONS:
                for level in cfg.levels:
                    path = out / "VideoFlash" / clip_name(actor, sentence, emotion, level)
                    paths.append(path)
                    if not (keep and path.exists()):
                        jobs.append((cfg, actor, sentence, emotion, level, str(path)))
    workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    bar = tqdm(total=len(paths), initial=len(paths) - len(jobs), desc="synth", unit="clip", disable=not progress)
    with bar:
        if workers <= 1:
            for job in jobs:
                _render_job(job)
                bar.update()
        else:
            # spawn, not fork: the caller may have torch (and its thread pools) loaded
            with get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(_render_job, jobs, chunksize=4):
                    bar.update()
    return sorted(paths)

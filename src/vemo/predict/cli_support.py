"""What `vemo predict` does with its arguments: `vemo.predict`'s rows, written to files, past bad inputs.

Per input: `NAME.csv` and `NAME.json` (the windows), `NAME.png` (timeline, videos only) and, with
--annotate, `NAME.mp4`; for all inputs together: `predictions.csv` and `predictions.jsonl` with a
`source` column. NAME is the file's stem, made unique across the inputs (`unique_names`). Nothing is
written over an input. With --workers N the inputs are shared among N processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from vemo.data.sources.video import ClipError
from vemo.io import check_writable, tidy_on_failure, write_json
from vemo.predict.api import Item, expand, load_predictor, predict_item, skip_reason
from vemo.predict.run import NO_FACE, PARTIAL, Predictor, check_window, predict_frames, resolve_device, summarize
from vemo.predict.stream import webcam_frames
from vemo.predict.table import records, write_csv, write_jsonl

COMBINED = "predictions"  # the combined table's name; no input's outputs may take it


def unique_names(paths: list[Path], reserved: tuple[str, ...] = (COMBINED,)) -> list[str]:
    """Output names: each file's stem, else `stem-2`, `stem-3`... never one another input's stem or a
    reserved name claims (happy/01.flv, sad/01.flv, x/01-2.flv -> 01, 01-3, 01-2). Compared without
    case, as on macOS and Windows file systems."""
    claimed = {p.stem.lower() for p in paths} | {r.lower() for r in reserved}
    used: set[str] = {r.lower() for r in reserved}
    names = []
    for p in paths:
        name, k = p.stem, 1
        while name.lower() in used or (k > 1 and name.lower() in claimed):
            k += 1
            name = f"{p.stem}-{k}"
        used.add(name.lower())
        names.append(name)
    return names


def annotate_targets(items: list[Item], names: list[str], annotate: str | None) -> list[Path | None]:
    """Where each video's annotated copy goes. One input: the path given (or NAME.mp4 inside it when it
    is a folder). Several inputs: NAME.mp4 inside a folder, which must be given as one."""
    if not annotate:
        return [None] * len(items)
    dest = Path(annotate)
    folder = dest.is_dir() or not dest.suffix
    readable = sum(not item.problem for item in items)
    if readable > 1 and not folder:
        raise ValueError(f"--annotate {annotate}: with {readable} inputs give a folder (one video per input)")
    return [
        None if item.is_image or item.problem else (dest / f"{name}.mp4" if folder else dest)
        for item, name in zip(items, names, strict=True)
    ]


def refuse_overwrite(inputs: list[Path], outputs: list[Path]) -> None:
    """Raise ValueError when an output would replace an input (same path, symlink or hard link)."""
    resolved = {p.resolve(): p for p in inputs}
    for out in outputs:
        same = resolved.get(out.resolve())
        if same is None and out.exists():
            same = next((p for p in inputs if p.exists() and os.path.samefile(p, out)), None)
        if same is not None:
            raise ValueError(f"{out}: refusing to write an output over the input {same}")


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
    workers: int = 1,
    device: str = "cpu",
    preprocessing: dict | None = None,
) -> list[dict]:
    """`vemo predict`: one result per usable input (skipped ones named in the log). Raises ClipError when
    nothing usable was predicted (no input readable, or no face in any window): the CLI exits 2.
    `preprocessing`: face settings given by the user (--set prepare.KEY=VALUE), else the model's own."""
    check_window(window_s, hop_s)
    resolve_device(device)  # before any worker starts or file is written
    with tidy_on_failure(out):  # nothing predicted at all: no empty output folder left behind
        out_dir = check_writable(out)  # before any input is read: a long run never ends in a failed write
        if webcam is not None:
            predictor = load_predictor(checkpoint, device, preprocessing)
            return [_webcam(webcam, predictor, out_dir, (window_s, hop_s, all_faces), max_seconds, log)]
        items = expand(inputs)
        names = unique_names([it.path for it in items])
        targets = annotate_targets(items, names, annotate)
        outputs = [out_dir / f"{n}.{ext}" for n in [*names, COMBINED] for ext in ("csv", "json", "png", "jsonl")]
        refuse_overwrite([it.path for it in items], outputs + [t for t in targets if t is not None])
        jobs = [(it, name, target) for it, name, target in zip(items, names, targets, strict=True)]
        settings = {"window_s": window_s, "hop_s": hop_s, "all_faces": all_faces, "out": str(out_dir)}
        results = _run(jobs, (checkpoint, device, preprocessing), settings, workers, progress and workers == 1)
        return _finish(results, out_dir, log)


def _run(jobs: list, model: tuple, settings: dict, workers: int, progress: bool) -> list[dict]:
    """Each job's result in input order, on this process or on `workers` processes (one model each).
    `model`: (checkpoint, device, preprocessing), as `load_predictor` takes them."""
    if workers <= 1 or len(jobs) == 1:
        predictor = load_predictor(*model)
        return [_one(job, predictor, settings, progress) for job in jobs]
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(*model, threads)
    ) as pool:
        return list(pool.map(_worker_one, jobs, [settings] * len(jobs)))


_worker_predictor: Predictor | None = None


def _init_worker(checkpoint: str, device: str, preprocessing: dict | None, threads: int) -> None:
    global _worker_predictor
    _worker_predictor = Predictor(checkpoint, threads=threads, device=device, preprocessing=preprocessing)


def _worker_one(job, settings: dict) -> dict:
    return _one(job, _worker_predictor, settings, progress=False)


def _one(job: tuple[Item, str, Path | None], predictor: Predictor, settings: dict, progress: bool) -> dict:
    """Predict one input and write its files; an input that fails, for a reason foreseen or not, becomes a
    `skipped` result (the batch goes on; a missing package stops it)."""
    item, name, target = job
    window_s, hop_s, all_faces = settings["window_s"], settings["hop_s"], settings["all_faces"]
    try:
        rows, facts = predict_item(item, predictor, window_s, hop_s, all_faces, annotate=target, progress=progress)
    except ImportError:  # a missing package is no fault of this input: stop
        raise
    except Exception as err:
        return {"source": item.name, "skipped": skip_reason(err, item)}
    out = Path(settings["out"])
    recs = records(rows, predictor.labels, item.name)
    meta = {"source": item.name, **facts, "window_s": window_s, "hop_s": hop_s, "labels": predictor.labels}
    write_csv(out / f"{name}.csv", recs, predictor.labels)
    write_json(out / f"{name}.json", {**meta, "windows": rows})
    if not item.is_image:
        from vemo.reporting.plots import plot_timeline

        plot_timeline(rows, predictor.labels, out / f"{name}.png", title=item.path.name)
    done = {"source": item.name, "name": name, "records": recs, "labels": predictor.labels, "summary": summarize(rows)}
    return {**done, "truncated": facts["truncated"]} if "truncated" in facts else done


def _finish(results: list[dict], out_dir: Path, log) -> list[dict]:
    """Log each result, write the combined table, and raise when nothing usable came out."""
    done = [r for r in results if "skipped" not in r]
    for r in results:
        if "skipped" in r:
            log(f"skipped {r['source']}: {r['skipped']}")
            continue
        s = r["summary"]
        counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
        log(f"{r['source']}: {s['majority']} ({s['windows']} windows: {counts})")
        if "truncated" in r:
            log(f"warning: {r['source']}: {r['truncated']} ({PARTIAL})")
    if not done:
        raise ClipError("nothing could be predicted: " + "; ".join(f"{r['source']}: {r['skipped']}" for r in results))
    recs = [rec for r in done for rec in r["records"]]
    write_csv(out_dir / f"{COMBINED}.csv", recs, done[0]["labels"])
    write_jsonl(out_dir / f"{COMBINED}.jsonl", recs)
    log(
        f"predicted {len(done)} input(s), skipped {len(results) - len(done)}; "
        f"outputs in {out_dir} (all windows: {out_dir / COMBINED}.csv, .jsonl)"
    )
    if all(rec["label"] == NO_FACE for rec in recs):
        raise ClipError(f"no face found in any window of the {len(done)} input(s); outputs in {out_dir}", "no-face")
    return done


def _webcam(device: int, predictor: Predictor, out_dir: Path, windows: tuple, seconds: float, log) -> dict:
    rows = predict_frames(webcam_frames(device, max_seconds=seconds), predictor, *windows)
    recs = records(rows, predictor.labels, f"webcam {device}")
    write_csv(out_dir / "webcam.csv", recs, predictor.labels)
    write_json(out_dir / "webcam.json", {"webcam": device, "labels": predictor.labels, "windows": rows})
    log(f"webcam {device}: {summarize(rows)}")
    return {"source": f"webcam {device}", "records": recs, "summary": summarize(rows)}

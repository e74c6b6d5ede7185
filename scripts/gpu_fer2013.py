"""FER2013 members trained on a lent GPU inside one short lease: `pack` here, `run` there, `fetch` back.

Why a script: a GPU machine is lent to some sessions only, for about 15 minutes of device time in all
(its start included), with PyTorch but no PyAV, no network, and a 64 MiB limit on the files that travel
(the repository included) and on those that come back (16 MiB a file, 8 files). So:

- `pack` (on the CPU machine) keeps the training and validation images of a prepared FER2013 cache as
  their original JPEG bytes: one header shared by all 28,709 files (checked) and each file's scan,
  about 36 MB, lossless with respect to the pixels vemo trained on (checked image by image), plus the
  cache's manifest without the test items (PublicTest never travels, so it cannot be used there). The
  pack is written in parts (`.gpu/part1`, `.gpu/part2`, ...) so it can travel in more than one call
  when the repository leaves too little room for all of it at once.
- `run` (on the GPU machine) rebuilds the cache and checks its pixels against the packed digest; runs
  every member for two pretraining epochs and one sequence epoch, all at once, timing when each epoch's
  row lands in history.csv, to measure what an epoch (validation and checkpoint included) and a run's
  fixed costs take on this card; fits as many pretraining epochs as the time budget leaves
  (at most the config's); trains the members at once (`vemo train`, seeds 0..K-1; K is 1 unless
  `--models` says more: one longer-trained model beats two shorter ones as long as the epochs, not the
  seeds, are what is short), then gives each the onset epoch (`configs/fer2013_gpu_onset.yaml`); and
  leaves each member's `best.pt` under OUT in parts of 15 MiB (as soon as the member is whole, then
  again after its onset epoch), with `plan.json` (card, timings, epochs, digests) and the runs' text
  records in `runs.tar.gz`, which come back whatever failed.
- `fetch` (on the CPU machine) joins the parts, checks their digests and unpacks the records.

  .venv/bin/python scripts/gpu_fer2013.py pack --data cache/fer2013-2fc7fb3bba7557d4 --out .gpu --parts 2
  (device) python3 scripts/gpu_fer2013.py run --pack .gpu/part1 .gpu/part2 --out $OUT --budget 520
  .venv/bin/python scripts/gpu_fer2013.py fetch --src FILES_AT --out runs/gpu-fer2013

Each device call carries the repository too, and both must fit in 64 MiB: with today's repository
(28.7 MiB) one call carries `.gpu` whole, 0.7 MiB to spare (`pack` prints it). When less is left, send it in two calls
on the same machine, the second at once (a machine stays warm for 30 s): the first carries `.gpu/part1`
and runs `mkdir -p .gpu-store && cp -r .gpu/part1 .gpu-store/` (an ignored folder, kept between
calls), the second carries `.gpu/part2` and runs with `--pack .gpu-store/part1 .gpu/part2`. Give the
call a timeout ~50 s above `--budget`, which counts from the script's start.

Nothing here is needed to use vemo; it is how the project turns a short GPU lease into models.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # on the GPU machine vemo is not installed, only carried

from vemo.data.loading.prepare import split_counts  # noqa: E402
from vemo.io import atomic_write, write_json  # noqa: E402

PACK_NAME = "fer2013.pack"
TRAVEL_LIMIT = 64 * 2**20  # what one device call may carry, the repository included
PART_BYTES = 15 * 2**20  # what comes back from the device: under its 16 MiB limit per file
SPLITS = ("train", "val")
MAX_FILES = 8  # what comes back from the device: 8 files at most
RECORDS = (".csv", ".json", ".yaml", ".log", ".md")  # the runs' text records come back; figures are remade here


def _jpeg_split(data: bytes) -> tuple[bytes, bytes]:
    """(header up to and including the start-of-scan segment, the entropy-coded scan and end marker)."""
    sos = data.index(b"\xff\xda")
    end = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    return data[:end], data[end:]


def _decode(header: bytes, scan: np.ndarray) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(header + scan.tobytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("a packed image does not decode")
    return image


def _source(item: dict, root: Path | None) -> Path:
    path = Path(item["source"])
    return path if root is None or path.is_absolute() else root / path


# ---- pack (CPU machine) ------------------------------------------------------------------------------


def pack(data: Path, out: Path, parts: int, root: Path | None, every: int = 1) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    frames = np.load(data / "frames.npy", mmap_mode="r")
    if manifest.get("kind") != "stills" or frames.shape[1:] != (1, 48, 48):
        raise SystemExit(f"{data}: not a prepared FER2013 cache of 48x48 stills (kind {manifest.get('kind')})")
    keep = [i for i, item in enumerate(manifest["items"]) if item["split"] in SPLITS][::every]
    header, scans, offsets = None, [], [0]
    for n, i in enumerate(keep):
        src = _source(manifest["items"][i], root)
        head, scan = _jpeg_split(src.read_bytes())
        if header is None:
            header = head
        if head != header:
            raise SystemExit(f"{src}: its JPEG header differs from the others; this packer assumes one shared header")
        if not np.array_equal(_decode(header, np.frombuffer(scan, np.uint8)), frames[i, 0]):
            raise SystemExit(f"{src}: decoding it does not give the cached pixels; re-run `vemo prepare`")
        scans.append(scan)
        offsets.append(offsets[-1] + len(scan))
        if n % 5000 == 0:
            print(f"packed {n}/{len(keep)}", flush=True)
    kept = dict(manifest, items=[manifest["items"][i] for i in keep])
    kept["counts"] = split_counts(kept["items"])
    kept["packed_by"] = "scripts/gpu_fer2013.py: train and val items only; the test split does not travel"
    pixels = np.ascontiguousarray(frames[keep])
    buf = io.BytesIO()
    np.savez(
        buf,
        header=np.frombuffer(header, np.uint8),
        scans=np.frombuffer(b"".join(scans), np.uint8),
        offsets=np.asarray(offsets, np.int64),
        manifest=np.frombuffer(zlib.compress(json.dumps(kept).encode(), 9), np.uint8),
        pixels_sha256=np.asarray(hashlib.sha256(pixels.tobytes()).hexdigest()),
    )
    blob = buf.getvalue()
    size = math.ceil(len(blob) / parts)
    for k in range(parts):
        part = blob[k * size : (k + 1) * size]
        atomic_write(out / f"part{k + 1}" / f"{PACK_NAME}.{k:02d}", lambda fh, part=part: fh.write(part))
    print(f"{len(keep)} images, {len(blob) / 2**20:.1f} MiB in {parts} part(s) under {out}/part*/")
    tracked = _tracked_bytes()
    if tracked is not None:
        spare = (TRAVEL_LIMIT - tracked - len(blob)) / 2**20
        how = f"one device call carries it with {spare:.1f} MiB to spare" if spare > 0.5 else "send it in two calls"
        print(f"the repository's tracked files: {tracked / 2**20:.1f} MiB; {how} (64 MiB a call, all included)")


def _tracked_bytes() -> int | None:
    """Bytes of the repository's tracked files (what travels with every device call), None without git."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum((REPO / n).stat().st_size for n in names.decode().split("\0") if n and (REPO / n).is_file())


# ---- run (GPU machine) -------------------------------------------------------------------------------


class Log:
    def __init__(self, path: Path):
        self.fh = path.open("a")

    def __call__(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()


def unpack(folders: list[Path], cache: Path, log: Log) -> dict:
    """Rebuild frames.npy and manifest.json from the pack's parts; report whether the pixels match."""
    names = sorted(p for folder in folders for p in folder.glob(f"{PACK_NAME}.*"))
    if not names:
        raise SystemExit(f"no {PACK_NAME}.* under {', '.join(map(str, folders))}")
    z = np.load(io.BytesIO(b"".join(p.read_bytes() for p in names)))
    header, scans, offsets = z["header"].tobytes(), z["scans"], z["offsets"]
    frames = np.stack([_decode(header, scans[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)])
    frames = frames[:, None]
    digest = hashlib.sha256(frames.tobytes()).hexdigest()
    match = digest == str(z["pixels_sha256"])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "frames.npy", frames)
    (cache / "manifest.json").write_text(zlib.decompress(z["manifest"].tobytes()).decode())
    log(f"unpacked {len(frames)} images from {len(names)} part(s); pixels as packed: {match}")
    return {"images": len(frames), "parts": [p.name for p in names], "pixels_match": match}


def _train(cache: Path, config: str, out: Path, seed: int, threads: int, sets: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vemo.cli", "train", "--config", str(REPO / config), "--data", str(cache)]
    cmd += ["--out", str(out), "--no-test", "--quiet"]
    for s in [f"train.seed={seed}", f"train.threads={threads}", *sets]:
        cmd += ["--set", s]
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, env=env, stdout=(out.parent / f"{out.name}.log").open("w"), stderr=subprocess.STDOUT)


def _wait(procs: list[subprocess.Popen], deadline: float, log: Log, rows: list[Path] = ()) -> tuple[bool, dict]:
    """Wait for every process; past the deadline, stop them all. Returns (all ended well, the wall-clock
    times at which each history.csv in `rows` gained its 1st and 2nd data row: {path: [t1, t2]})."""
    seen: dict = {}
    while any(p.poll() is None for p in procs):
        if time.time() > deadline:
            log("deadline reached: stopping the runs still going")
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            return False, seen
        for path in rows:
            n = len(path.read_text().splitlines()) - 1 if path.exists() else 0
            times = seen.setdefault(path, [])
            while len(times) < min(n, 2):
                times.append(time.time())
        time.sleep(0.2)
    return all(p.returncode == 0 for p in procs), seen


def plan_epochs(epoch: float, first: float, tail: float, left: float, ceiling: int) -> int:
    """Pretraining epochs that fit in `left` seconds. A run costs `first` (start, data, the first epoch
    with its validation and checkpoint) + an `epoch` for each further one + `tail` (sequence epoch,
    calibration, evaluation, report), all measured on this card; the onset run after it costs at most
    `first` + `tail`. 5 % is kept back on the epochs; at most `ceiling`."""
    return max(0, min(ceiling, 1 + math.floor((left - 2 * first - 2 * tail) / (1.05 * epoch))))


def _bring_back(best: Path, name: str, out: Path) -> dict:
    """`best` under OUT as `name.pt.0`, `.1`, ... (each under the 16 MiB a returned file may have)."""
    for stale in out.glob(f"{name}.pt.*"):
        stale.unlink()
    blob = best.read_bytes()
    parts = [f"{name}.pt.{j}" for j in range(math.ceil(len(blob) / PART_BYTES))]
    for j, part in enumerate(parts):
        chunk = blob[j * PART_BYTES : (j + 1) * PART_BYTES]
        atomic_write(out / part, lambda fh, chunk=chunk: fh.write(chunk))
    return {"from": f"{best.parent.name}/{best.name}", "sha256": hashlib.sha256(blob).hexdigest(), "parts": parts}


def run(args) -> None:
    if 3 + 2 * args.models > MAX_FILES:
        raise SystemExit(f"--models {args.models}: {MAX_FILES} files come back at most (3 + 2 per member)")
    started = time.time()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*work.glob("probe*"), *work.glob("seed*"), *work.glob("onset*")]:  # an earlier try's
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    log = Log(out / "driver.log")
    import torch

    plan = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "budget_s": args.budget,
        "models": args.models,
        "config": args.config,
        "onset_config": args.onset_config,
        "members": {},
    }
    log(f"card: {plan['gpu']}; torch {plan['torch']}; budget {args.budget} s; {args.models} member(s)")
    try:
        _train_members(args, plan, work, out, log, started + args.budget)
    finally:  # whatever happened, the records come back: they say why
        with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
            for path in sorted(work.rglob("*")):
                if path.suffix in RECORDS and "cache" not in path.relative_to(work).parts:
                    tar.add(path, arcname=str(path.relative_to(work)))
        plan["seconds"] = time.time() - started
        write_json(out / "plan.json", plan)
        log(f"{plan['seconds']:.0f} s; members back: {', '.join(plan['members']) or 'none'}")


def _train_members(args, plan: dict, work: Path, out: Path, log: Log, deadline: float) -> None:
    plan["data"] = unpack([Path(p) for p in args.pack], work / "cache", log)
    cache, k, threads = work / "cache", args.models, max(1, (os.cpu_count() or 2) // args.models)
    sets = list(args.set)

    # 1. measure: every member two pretraining epochs and one sequence epoch, at once
    launched = time.time()
    twice = [*sets, "train.pretrain_epochs=2"]
    probes = [_train(cache, args.config, work / f"probe{i}", i, threads, twice) for i in range(k)]
    histories = [work / f"probe{i}" / "history.csv" for i in range(k)]
    ok, seen = _wait(probes, deadline, log, histories)
    ended = time.time()
    if not ok or any(len(seen.get(h, [])) < 2 for h in histories):
        raise SystemExit(f"the measuring runs failed: their logs are in runs.tar.gz ({work}/probe*.log there)")
    first = max(seen[h][0] for h in histories) - launched
    epoch = max(seen[h][1] - seen[h][0] for h in histories)
    tail = ended - min(seen[h][1] for h in histories)
    left = deadline - time.time() - args.reserve
    epochs = plan_epochs(epoch, first, tail, left, args.max_epochs)
    plan["measured"] = {"first_s": first, "epoch_s": epoch, "tail_s": tail, "left_s": left}
    plan["pretrain_epochs"] = epochs
    log(f"measured, {k} at once: start + 1st epoch {first:.0f} s, each further epoch {epoch:.2f} s, tail {tail:.0f} s")
    log(f"{left:.0f} s left: {epochs} pretraining epochs each")
    write_json(out / "plan.json", plan)
    if epochs < args.min_epochs:
        raise SystemExit(f"only {epochs} epochs fit (< {args.min_epochs}): not worth a member; nothing trained")

    # 2. train the members; each comes back as soon as it is whole, then again after its onset epoch
    mains = [
        _train(cache, args.config, work / f"seed{i}", i, threads, [*sets, f"train.pretrain_epochs={epochs}"])
        for i in range(k)
    ]
    ok, _ = _wait(mains, deadline - first - tail, log)  # what an onset run needs stays
    log(f"members trained: {ok} ({time.time() - deadline + args.budget:.0f} s since start)")
    starts = {}
    for i in range(k):
        best, last = work / f"seed{i}" / "best.pt", work / f"seed{i}" / "last.pt"
        if best.exists():
            plan["members"][f"member{i}"] = _bring_back(best, f"member{i}", out)
        if best.exists() or last.exists():  # a run stopped in pretraining still has its encoder in last.pt
            starts[i] = best if best.exists() else last
    write_json(out / "plan.json", plan)
    onsets = [
        _train(cache, args.onset_config, work / f"onset{i}", i, threads, [*sets, f"train.init_from={start}"])
        for i, start in starts.items()
    ]
    ok_onset, _ = _wait(onsets, deadline - 15, log)
    log(f"onset epochs done: {ok_onset} ({time.time() - deadline + args.budget:.0f} s since start)")
    for i in starts:
        best = work / f"onset{i}" / "best.pt"
        if best.exists():
            plan["members"][f"member{i}"] = _bring_back(best, f"member{i}", out)
    plan["all_ended_well"] = ok and ok_onset


# ---- fetch (CPU machine) -----------------------------------------------------------------------------


def fetch(src: Path, out: Path) -> None:
    plan = json.loads((src / "plan.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for name, member in plan.get("members", {}).items():
        blob = b"".join((src / part).read_bytes() for part in member["parts"])
        if hashlib.sha256(blob).hexdigest() != member["sha256"]:
            raise SystemExit(f"{name}: its parts do not join into the file that was sent (SHA-256 differs)")
        target = out / name / "best.pt"
        atomic_write(target, lambda fh, blob=blob: fh.write(blob))
        print(f"{target} ({len(blob) / 2**20:.1f} MiB, {member['from']})")
    if (src / "runs.tar.gz").exists():
        with tarfile.open(src / "runs.tar.gz") as tar:
            tar.extractall(out / "records", filter="data")
    shutil.copy(src / "plan.json", out / "plan.json")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="on the CPU machine: a prepared FER2013 cache -> .gpu/part*/")
    a.add_argument("--data", type=Path, required=True, help="the prepared cache (`vemo prepare` printed it)")
    a.add_argument("--out", type=Path, default=Path(".gpu"))
    a.add_argument("--parts", type=int, default=2, help="folders to split the pack into (one per device call)")
    a.add_argument("--root", type=Path, default=None, help="where the cache's relative source paths start")
    a.add_argument("--every", type=int, default=1, help="keep every N-th image only: a quick rehearsal on the CPU")
    b = sub.add_parser("run", help="on the GPU machine: measure, train K members, leave them under --out")
    b.add_argument("--pack", nargs="+", required=True, help="folders holding the pack's parts")
    b.add_argument("--out", required=True, help="what comes back (the device's $OUT)")
    b.add_argument("--work", default="/tmp/vemo-gpu", help="runs and the rebuilt cache")
    b.add_argument("--budget", type=float, default=520, help="seconds from start to the last file written")
    b.add_argument("--reserve", type=float, default=40, help="seconds kept back for bringing the files back")
    b.add_argument("--models", type=int, default=1, help="members trained at once (seeds 0..K-1)")
    b.add_argument("--config", default="configs/fer2013_gpu.yaml")
    b.add_argument("--onset-config", default="configs/fer2013_gpu_onset.yaml")
    b.add_argument("--max-epochs", type=int, default=300)
    b.add_argument("--min-epochs", type=int, default=20)
    b.add_argument("--set", action="append", default=[], help="more config overrides for every run")
    c = sub.add_parser("fetch", help="on the CPU machine: join the parts that came back")
    c.add_argument("--src", type=Path, required=True, help="the folder the device's files landed in")
    c.add_argument("--out", type=Path, default=Path("runs/gpu-fer2013"))
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args.data, args.out, args.parts, args.root, args.every)
    elif args.command == "run":
        run(args)
    else:
        fetch(args.src, args.out)


if __name__ == "__main__":
    main()

"""`vemo train --resume` after a SIGKILL ends exactly where an uninterrupted run ends; runs reproduce.

The training runs are real `vemo train` processes on the tiny synthetic set (4 actors, 24 clips), one
thread each. A run is killed twice: after pretraining epoch 2 (resume crosses into the joint stage) and,
once resumed, after joint epoch 2 (resume restores the joint optimiser and scheduler).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vemo.checkpoint import load_checkpoint
from vemo.data.loading.prepare import load_prepared

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
pytestmark = pytest.mark.slow


def _command(root: Path, out: Path, cache: Path, resume: bool = False) -> list[str]:
    settings = ["train.pretrain_epochs=2", "train.epochs=3", "train.threads=1", "train.batch_size=2"]
    settings += ["train.pretrain_batch_size=2", f"prepare.cache_dir={cache}"]
    cmd = [sys.executable, "-m", "vemo.cli", "train", "--config", str(REPO / "configs/tiny.yaml")]
    cmd += ["--root", str(root), "--out", str(out), "--quiet", *[a for s in settings for a in ("--set", s)]]
    return cmd + (["--resume"] if resume else [])


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _history(out: Path) -> list[dict]:
    path = out / "history.csv"
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def _at_rest(out: Path, epochs: int) -> bool:
    """At least `epochs` epochs in history.csv, last.pt saved after the last of them, no write in flight."""
    rows = len(_history(out))
    if rows < epochs or _temporaries(out) or not (out / "last.pt").exists():
        return False
    return len(load_checkpoint(out / "last.pt").resume["history"]) == rows


# `vemo train` that stops itself (SIGSTOP) right after last.pt is saved with argv[1] epochs in its history,
# so the test kills it at exactly that point, however loaded the machine (polling the files from outside
# could miss a tiny epoch and kill one later)
STOP_AFTER = """
import os, signal, sys
from vemo.cli import main
from vemo.training.trainer import Run
epochs, save_last = int(sys.argv[1]), Run.save_last
def stop_after(self, *args, **kwargs):
    save_last(self, *args, **kwargs)
    if len(self.state.history) == epochs:
        os.kill(os.getpid(), signal.SIGSTOP)
Run.save_last = stop_after
sys.exit(main(sys.argv[2:]))
"""


def _run_and_kill(cmd: list[str], out: Path, epochs: int) -> None:
    """Run `cmd` (`python -m vemo.cli train ...`) until last.pt is saved after `epochs` epochs; SIGKILL it.

    The process stops itself there (SIGSTOP), so the files are looked at while nothing runs and what is
    seen is what the kill leaves: no temporary file, last.pt complete and after the last history row.
    """
    assert cmd[1:3] == ["-m", "vemo.cli"]
    proc = subprocess.Popen(
        [cmd[0], "-c", STOP_AFTER, str(epochs), *cmd[3:]], env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
            if pid:
                assert os.WIFSTOPPED(status), f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
                break
            time.sleep(0.05)
        else:
            pytest.fail("training did not reach the kill point in time")
        assert _at_rest(out, epochs)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _killed_state(out: Path) -> tuple[str, int]:
    assert _temporaries(out) == []
    resume = load_checkpoint(out / "last.pt").resume  # complete and readable
    return resume["stage"], resume["epoch"]


@pytest.fixture(scope="module")
def runs(tiny_synth, tmp_path_factory):
    """Four training runs: killed twice and resumed; uninterrupted; uninterrupted again (own cache)."""
    tmp = tmp_path_factory.mktemp("resume")
    out = {name: tmp / name for name in ("resumed", "full", "again")}
    cache = tmp / "cache"
    _run_and_kill(_command(tiny_synth, out["resumed"], cache), out["resumed"], epochs=2)
    first_kill = _killed_state(out["resumed"])
    _run_and_kill(_command(tiny_synth, out["resumed"], cache, resume=True), out["resumed"], epochs=4)
    second_kill = _killed_state(out["resumed"])
    _run(_command(tiny_synth, out["resumed"], cache, resume=True))
    _run(_command(tiny_synth, out["full"], cache))
    _run(_command(tiny_synth, out["again"], tmp / "cache-again"))
    return out, (first_kill, second_kill)


def _rows(out: Path) -> list[tuple]:
    return [(r["stage"], r["epoch"], f"{float(r['train_loss']):.6g}") for r in _history(out)]


def _metrics(out: Path) -> tuple[float, float]:
    m = json.loads((out / "metrics.json").read_text())
    return m["accuracy"], m["macro_f1"]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a).weights, load_checkpoint(b).weights
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_resume_after_sigkill_ends_like_an_uninterrupted_run(runs):
    out, kills = runs
    # the kills landed where intended: at the end of a pretraining epoch, then of a joint one
    assert kills[0][0] == "pretrain" and kills[0][1] >= 2
    assert kills[1][0] == "joint" and kills[1][1] >= 2 and kills[1][1] < 3
    _same_weights(out["resumed"] / "best.pt", out["full"] / "best.pt")
    _same_weights(out["resumed"] / "last.pt", out["full"] / "last.pt")
    assert _metrics(out["resumed"]) == _metrics(out["full"])
    assert len(_rows(out["full"])) == 5
    assert _rows(out["resumed"]) == _rows(out["full"])
    assert _temporaries(out["resumed"]) == []


def test_same_seed_same_split_and_metrics(runs):
    out, _ = runs
    caches = [Path(json.loads((out[n] / "data.json").read_text())["cache"]) for n in ("full", "again")]
    assert caches[0] != caches[1]  # the second run prepared its own copy
    a, b = (load_prepared(c) for c in caches)
    assert a.items == b.items and a.manifest["stats"] == b.manifest["stats"]
    assert np.array_equal(np.asarray(a.frames()), np.asarray(b.frames()))
    _same_weights(out["full"] / "best.pt", out["again"] / "best.pt")
    assert _metrics(out["full"]) == _metrics(out["again"])
    assert _rows(out["full"]) == _rows(out["again"])

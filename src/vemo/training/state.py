"""What a training run keeps between processes: where it stopped, its early-stopping record and history
(`TrainState`), the checkpoints it writes, and the check that a resumed run is the interrupted one.

`Run.save_last` (trainer.py) adds the optimiser, schedule and RNG states to a `checkpoint_of` the model;
`load_resume` reads them back, refusing a config that differs in anything but where the run executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vemo import __version__
from vemo.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from vemo.config import MACHINE_PREPARE, Config
from vemo.data.loading.prepare import Prepared

# where a run executes: a resumed run may change these (floating-point sums then differ in the last bits)
MACHINE_ONLY = {"train": ("threads", "device"), "prepare": MACHINE_PREPARE}


@dataclass
class TrainState:
    """What resume restores besides weights, optimiser and RNG: where training stopped (the last
    finished epoch of a stage), the early-stopping record of the joint stage, the history and the time."""

    stage: str = "none"  # "none", "pretrain" or "joint"
    epoch: int = 0
    best: tuple[float, float] = (-1.0, float("inf"))  # (val accuracy, val loss) of the best joint epoch
    best_epoch: int = 0
    stale: int = 0  # joint epochs since the best one
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0  # seconds trained before this process started

    def improves(self, val_acc: float, val_loss: float) -> bool:
        """Better accuracy, ties broken by lower loss."""
        return (val_acc, -val_loss) > (self.best[0], -self.best[1])


def checkpoint_of(model, cfg: Config, prepared: Prepared, stats: dict, epoch: int, val_acc: float) -> Checkpoint:
    """The model as a checkpoint of this run (best.pt, and last.pt before its resume state is added)."""
    return Checkpoint(
        weights=model.state_dict(),
        config=cfg,
        labels=list(prepared.labels),
        stats=stats,
        kind=prepared.kind,
        epoch=epoch,
        val_acc=val_acc,
        vemo_version=__version__,
    )


def load_resume(out: Path, cfg: Config, log) -> Checkpoint | None:
    """The resume state in out/last.pt, or None when there is none (a fresh start)."""
    path = out / "last.pt"
    if not path.exists():
        log(f"resume: no {path} yet, starting from scratch")
        return None
    ckpt = load_checkpoint(path)
    if ckpt.resume is None:
        raise CheckpointError(f"{path} holds no resume state (written by an older vemo?)")
    saved, now = ckpt.config.to_dict(), cfg.to_dict()
    diffs = [
        f"{sec}.{k}"
        for sec in now
        if isinstance(now[sec], dict)
        for k in now[sec]
        if k not in MACHINE_ONLY.get(sec, ()) and now[sec][k] != saved.get(sec, {}).get(k)
    ]
    moved = [f"{s}.{k}" for s, ks in MACHINE_ONLY.items() for k in ks if now[s][k] != saved.get(s, {}).get(k)]
    if moved and not diffs:
        log(f"resuming with other {', '.join(moved)}: it continues, but not bit-identically to an uninterrupted run")
    if diffs:
        raise CheckpointError(
            f"cannot resume {path}: the config differs from the interrupted run's ({', '.join(diffs)}); "
            f"only where it runs may change ({', '.join(f'{s}.{k}' for s, ks in MACHINE_ONLY.items() for k in ks)})"
        )
    return ckpt


def state_from(saved: Checkpoint) -> TrainState:
    """The TrainState an interrupted run saved in its last.pt."""
    r = saved.resume
    return TrainState(r["stage"], r["epoch"], tuple(r["best"]), r["best_epoch"], r["stale"], r["history"], r["elapsed"])

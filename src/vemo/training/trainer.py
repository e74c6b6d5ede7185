"""`vemo train`: autoencoder pretraining on frames, then joint training on clips.

Plain PyTorch rather than Lightning: the loop is ~300 readable lines (nanoGPT style), the two-stage
schedule and the per-clip reconstruction subset are explicit, and data-parallel training needs only
`torch.distributed` + torchrun on top, which is how it will be added.

Stage 1 (`pretrain_epochs`): the frame encoder learns from single frames: a throw-away linear
classifier on each frame's code, plus, for autoencoder variants, reconstruction of the clean frame
from a noisy one (the denoising autoencoder pretraining). Frames, not clips: the LSTM is idle, so a
few frames per clip suffice, at a fraction of a joint epoch's cost.
Stage 2 (all variants): cross-entropy on clips + `recon_weight` x reconstruction of `recon_frames`
frames per clip. Validation every epoch, early stopping on validation accuracy (ties broken by lower
loss), best and last checkpoints, history as CSV and PNG.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vemo import __version__
from vemo.config import Config
from vemo.data.augment import augment_clips, random_erase
from vemo.data.loader import expand_batch, iterate, load_split, model_inputs, normalize
from vemo.data.prepare import Prepared
from vemo.io import write_json, write_text
from vemo.models.registry import count_parameters, model_from_config, to_channels_last
from vemo.provenance import environment
from vemo.training.checkpoint import atomic_save
from vemo.training.distributed import Dist, agree, average_gradients, device_for, setup, sync_buffers

ALONE = Dist()
CPU = torch.device("cpu")

HISTORY_FIELDS = (
    "stage",
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "recon_loss",
    "lr",
    "seconds",
)


def _check_train_config(cfg: Config) -> None:
    t = cfg.train
    if t.epochs < 1 or t.patience < 1 or t.batch_size < 1:
        raise ValueError("train.epochs, train.patience and train.batch_size must be at least 1")
    if t.pretrain_schedule not in ("constant", "onecycle", "cosine"):
        raise ValueError(f"train.pretrain_schedule must be constant, onecycle or cosine, not {t.pretrain_schedule!r}")
    if t.pretrain_optimizer not in ("adamw", "sgd"):
        raise ValueError(f"train.pretrain_optimizer must be 'adamw' or 'sgd', not {t.pretrain_optimizer!r}")
    if not 0.0 < t.recon_fraction <= 1.0:
        raise ValueError("train.recon_fraction must be in (0, 1]")
    if not 0.0 <= t.pretrain_from < 1.0 or t.pretrain_frames < 1:
        raise ValueError("train.pretrain_from must be in [0, 1) and train.pretrain_frames at least 1")


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


@dataclass
class TrainResult:
    best_checkpoint: Path
    best_epoch: int
    best_val_acc: float
    epochs_run: int
    seconds: float
    parameters: int
    processes: int = 1
    weights_sha256: str = ""  # of the final weights: equal on every process of a data-parallel run


def _inputs(xb: torch.Tensor, stats: dict, cfg: Config, gen: torch.Generator, train: bool):
    """Normalised clean clips, and the (augmented, noisy) version the model sees."""
    clean = normalize(xb, stats)
    if not train:
        return clean, clean
    t = cfg.train
    if t.augment:
        clean = augment_clips(clean, gen, t.aug_shift, t.aug_rotate, t.aug_scale)
    noisy = random_erase(clean, t.aug_erase, gen) if t.augment else clean  # the autoencoder fills the hole in
    return clean, noisy + t.noise_std * torch.randn(clean.shape, generator=gen) if t.noise_std else noisy


def _pick_frames(b: int, t: int, k: int, gen: torch.Generator, first: int = 0) -> torch.Tensor:
    """k distinct random frame indices per clip among frames first..t-1, as flat indices into (b*t)."""
    k = min(k, t - first)
    idx = first + torch.argsort(torch.rand(b, t - first, generator=gen), dim=1)[:, :k]
    return (idx + torch.arange(b).unsqueeze(1) * t).reshape(-1)


def _frames(clips: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """Rows `pick` of (B, T, ...) clips flattened to (B*T, ...)."""
    return clips.reshape(-1, *clips.shape[2:])[pick]


def _recon_loss(model: nn.Module, codes: torch.Tensor, clean: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """Reconstruction MSE of the picked frames; `codes` are those frames' codes (N, D)."""
    return F.mse_loss(model.reconstruct(codes).squeeze(1), _frames(clean, pick))


def _row(stage: str, epoch: int, loss: float, acc: float, recon, lr: float, start: float) -> dict:
    """One history.csv row (validation columns are added by the caller for joint epochs)."""
    return {
        "stage": stage,
        "epoch": epoch,
        "train_loss": loss,
        "train_acc": acc,
        "recon_loss": recon,
        "lr": lr,
        "seconds": time.time() - start,
    }


def pretrain_epoch(
    model, probe, opt, sched, x, y, stats, cfg: Config, gen, epoch: int, progress: bool, d: Dist = ALONE, device=CPU
) -> dict:
    """Stage 1, one epoch: train the frame encoder (and the autoencoder, if any) on single frames.

    Each step takes `pretrain_frames` random frames per clip and trains (a) a throw-away linear
    classifier `probe` on the per-frame codes with the clip's label and (b) for autoencoder variants,
    the denoising reconstruction. Frames come from the later part of each clip (`pretrain_from`):
    acted expressions start near neutral, and onset frames labelled with the clip's emotion are
    mostly label noise, which stalls a frame classifier. A clip of T frames costs T encoder passes per
    joint step but carries one label, so an encoder learns far faster from frames; the sequence model
    then starts from useful features instead of noise. Stills datasets train on the stills themselves.
    """
    model.train()
    use_ae = model.has_autoencoder
    start, ce_sum, rec_sum, correct, n = time.time(), 0.0, 0.0, 0, 0
    bs = cfg.train.pretrain_batch_size
    params = [p for group in opt.param_groups for p in group["params"]]
    bar = tqdm(
        iterate(x, y, bs, True, gen, shard=(d.rank, d.world)),
        total=math.ceil(len(x) // d.world / bs),
        desc=f"pretrain frames {epoch}/{cfg.train.pretrain_epochs}",
        disable=not progress,
        leave=False,
    )
    for xb, yb in bar:
        clean, noisy = (v.to(device) for v in _inputs(xb, stats, cfg, gen, train=True))
        yb = yb.to(device)
        b, t = clean.shape[:2]
        pick = _pick_frames(b, t, cfg.train.pretrain_frames, gen, first=int(cfg.train.pretrain_from * t))
        codes = model.encode_frames(_frames(noisy, pick))
        labels = yb.repeat_interleave(len(pick) // b)
        logits = probe(codes)
        ce = F.cross_entropy(logits, labels, label_smoothing=cfg.train.label_smoothing)
        loss = ce
        if use_ae:
            m = max(1, round(cfg.train.recon_fraction * len(pick)))  # picks are random: any m of them will do
            rec = _recon_loss(model, codes[:m], clean, pick[:m])
            loss = loss + cfg.train.recon_weight * rec
            rec_sum += rec.item() * len(pick)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params, d)
        opt.step()
        if sched is not None:
            sched.step()
        ce_sum += ce.item() * len(pick)
        correct += (logits.argmax(1) == labels).sum().item()
        n += len(pick)
        bar.set_postfix(ce=f"{ce_sum / n:.3f}", acc=f"{correct / n:.3f}")
    return _row(
        "pretrain", epoch, ce_sum / n, correct / n, rec_sum / n if use_ae else "", opt.param_groups[0]["lr"], start
    )


def joint_epoch(
    model,
    opt,
    sched,
    x,
    y,
    stats,
    cfg: Config,
    gen,
    epoch: int,
    frames: int,
    progress: bool,
    d: Dist = ALONE,
    device=CPU,
) -> dict:
    """Stage 2, one epoch: cross-entropy on clips + weighted reconstruction of a few frames per clip."""
    model.train()
    if cfg.train.freeze_encoder and model.has_frame_encoder:
        model.encoder.eval()  # frozen: batch-norm statistics stay those of pretraining
    use_ae = model.has_autoencoder and cfg.train.recon_weight > 0
    t0, total, correct, rec_total, n = time.time(), 0.0, 0, 0.0, 0
    params = [p for group in opt.param_groups for p in group["params"]]
    bar = tqdm(
        iterate(x, y, cfg.train.batch_size, True, gen, shard=(d.rank, d.world)),
        total=math.ceil(len(x) // d.world / cfg.train.batch_size),
        desc=f"train {epoch}/{cfg.train.epochs}",
        disable=not progress,
        leave=False,
    )
    for xb, yb in bar:
        clean, noisy = (v.to(device) for v in _inputs(expand_batch(xb, frames, gen), stats, cfg, gen, train=True))
        yb = yb.to(device)
        out_ = model(noisy)
        loss = F.cross_entropy(out_.logits, yb, label_smoothing=cfg.train.label_smoothing)
        if use_ae:
            pick = _pick_frames(*clean.shape[:2], cfg.train.recon_frames, gen)
            rec = _recon_loss(model, _frames(out_.codes, pick), clean, pick)
            loss = loss + cfg.train.recon_weight * rec
            rec_total += rec.item() * len(yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params, d)
        nn.utils.clip_grad_norm_(params, 5.0)  # what this stage trains: a frozen encoder's are not in it
        opt.step()
        sched.step()
        total += loss.item() * len(yb)
        correct += (out_.logits.argmax(1) == yb).sum().item()
        n += len(yb)
        bar.set_postfix(loss=f"{total / n:.3f}", acc=f"{correct / n:.3f}")
    return _row("joint", epoch, total / n, correct / n, rec_total / n if use_ae else "", sched.get_last_lr()[0], t0)


@torch.no_grad()
def validate(model, x, y, stats, cfg: Config, device=CPU) -> tuple[float, float]:
    model.eval()
    total, correct = 0.0, 0
    for xb, yb in iterate(x, y, max(cfg.train.batch_size, 32), shuffle=False):
        logits = model(model_inputs(xb, stats).to(device)).logits.cpu()
        total += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return total / max(len(x), 1), correct / max(len(x), 1)


def probe_frames(x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """One frame per validation clip for judging frame pretraining: the still itself, or for clips the
    frame in the middle of the part pretraining learns from (`pretrain_from` onwards)."""
    t = x.shape[1]
    first = int(cfg.train.pretrain_from * t)
    return x[:, (first + t - 1) // 2 if t > 1 else 0]


@torch.no_grad()
def validate_probe(model, probe, x, y, stats, device=CPU) -> tuple[float, float]:
    """Frame-level validation loss and accuracy of the encoder + throw-away probe (pretraining curves)."""
    model.eval()
    total, correct = 0.0, 0
    for xb, yb in iterate(x, y, 256, shuffle=False):
        logits = probe(model.encode_frames(normalize(xb, stats).to(device))).cpu()
        total += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return total / max(len(x), 1), correct / max(len(x), 1)


def pretrain_optimizer(params: list, cfg: Config, steps_per_epoch: int):
    """Optimiser and per-step learning-rate schedule (or None) of frame pretraining."""
    t = cfg.train
    if t.pretrain_optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=t.pretrain_lr, momentum=0.9, nesterov=True, weight_decay=t.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=t.pretrain_lr, weight_decay=t.weight_decay)
    total = max(1, t.pretrain_epochs * steps_per_epoch)
    if t.pretrain_schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.pretrain_lr, total_steps=total, pct_start=0.1)
    if t.pretrain_schedule == "cosine":
        warm = min(2 * steps_per_epoch, total // 10 + 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, None


def _write_history(rows: list[dict], out: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(out / "history.csv", buf.getvalue())


def _checkpoint(model, cfg: Config, prepared: Prepared, stats: dict, epoch: int, val_acc: float) -> dict:
    return {
        "model": model.state_dict(),
        "config": cfg.to_dict(),
        "labels": prepared.labels,
        "stats": stats,
        "kind": prepared.kind,
        "epoch": epoch,
        "val_acc": val_acc,
        "vemo_version": __version__,
    }


def _resume_state(stage, epoch, opt, sched, probe, gen, best, best_epoch, stale, history, elapsed) -> dict:
    """Everything needed to continue exactly where an epoch ended (plain values and tensors only)."""
    return {
        "stage": stage,
        "epoch": epoch,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "probe": probe.state_dict() if probe is not None else None,
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "best": list(best),
        "best_epoch": best_epoch,
        "stale": stale,
        "history": history,
        "elapsed": elapsed,
    }


def _load_resume(out: Path, cfg: Config, log) -> dict | None:
    """The resume state in out/last.pt, or None when there is none (a fresh start)."""
    from vemo.training.checkpoint import CheckpointError, load_checkpoint

    path = out / "last.pt"
    if not path.exists():
        log(f"resume: no {path} yet, starting from scratch")
        return None
    ckpt = load_checkpoint(path)
    if "resume" not in ckpt:
        raise CheckpointError(f"{path} holds no resume state (written by an older vemo?)")
    saved = {k: v for k, v in ckpt["config"].items() if k != "out"}
    now = {k: v for k, v in cfg.to_dict().items() if k != "out"}
    if saved != now:
        diffs = [
            f"{sec}.{k}"
            for sec in now
            if isinstance(now[sec], dict)
            for k in now[sec]
            if now[sec][k] != saved.get(sec, {}).get(k)
        ]
        raise CheckpointError(
            f"cannot resume {path}: the config differs from the interrupted run's ({', '.join(diffs)})"
        )
    return ckpt


def train(
    cfg: Config, prepared: Prepared, out_dir: str | Path, progress: bool = True, log=print, resume: bool = False
) -> TrainResult:
    """Train `cfg.model` on the prepared data's train split, selecting on its val split.

    After every epoch (of either stage) `last.pt` holds the model and the full resume state (optimiser,
    scheduler, RNG states, early-stopping counters, history), written atomically; `resume=True`
    continues from it and, with the same config on the same machine, ends with the same weights as an
    uninterrupted run.
    """
    _check_train_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Record the preprocessing the data really had (a cache may come from `--data` with other settings),
    # so the checkpoint describes its inputs and evaluation re-prepares the same frames and split.
    for key, value in prepared.manifest["settings"].items():
        if key not in ("workers", "cache_dir") and hasattr(cfg.prepare, key):
            setattr(cfg.prepare, key, value)
    d = setup(cfg.train.device)
    device = device_for(d, cfg.train.device)
    if not d.main:
        log, progress = (lambda *_: None), False  # one voice: rank 0 logs and writes
    set_threads(cfg.train.threads)
    gen = seed_everything(cfg.train.seed)
    state = _load_resume(out, cfg, log) if resume else None
    if d.main:
        cfg.save(out / "config.yaml")
        write_json(out / "environment.json", environment(prepared.path / "manifest.json"))
    stats = dict(prepared.manifest["stats"])
    frames = prepared.manifest["settings"]["frames"]
    x_tr, y_tr = load_split(prepared, "train", expand=False)  # stills get fresh sequences per batch
    x_va, y_va = load_split(prepared, "val")
    if len(x_tr) == 0 or len(x_va) == 0:
        raise ValueError(f"train and val splits must be non-empty (train {len(x_tr)}, val {len(x_va)})")
    model = model_from_config(cfg.model, len(prepared.labels), prepared.manifest["settings"]["size"])
    if cfg.train.channels_last:
        model = to_channels_last(model)
    n_params = count_parameters(model)
    where = f"; {d.world} processes" if d.active else ""
    log(f"model {cfg.model.name} ({n_params / 1e6:.2f}M parameters); train {len(x_tr)} clips, val {len(x_va)}{where}")
    history: list[dict] = []
    best, best_epoch, stale, elapsed = (-1.0, float("inf")), 0, 0, 0.0
    done = ("none", 0)
    if state is not None:
        model.load_state_dict(state["model"])
        r = state["resume"]
        history, best, best_epoch, stale, elapsed = (
            r["history"],
            tuple(r["best"]),
            r["best_epoch"],
            r["stale"],
            r["elapsed"],
        )
        done = (r["stage"], r["epoch"])
        log(f"resuming after {r['stage']} epoch {r['epoch']} ({elapsed / 60:.1f} min trained so far)")
    model = model.to(device)
    started = time.time() - elapsed

    def restore_rng():
        """RNG states as they were when the interrupted run saved; called right before the next epoch."""
        if state is not None:
            gen.set_state(state["resume"]["generator"])
            torch.set_rng_state(state["resume"]["torch_rng"])
            if torch.cuda.is_available() and state["resume"].get("cuda_rng"):
                torch.cuda.set_rng_state_all(state["resume"]["cuda_rng"])

    def save_last(stage, epoch, opt, sched, probe, val_acc):
        if not d.main:
            return
        ckpt = _checkpoint(model, cfg, prepared, stats, epoch, val_acc)
        ckpt["resume"] = _resume_state(
            stage, epoch, opt, sched, probe, gen, best, best_epoch, stale, history, time.time() - started
        )
        atomic_save(ckpt, out / "last.pt")

    can_pretrain = model.has_frame_encoder  # frame-level pretraining needs a frame encoder
    if cfg.train.pretrain_epochs > 0 and not can_pretrain:
        log(f"{cfg.model.name} has no frame encoder: frame pretraining skipped")
    if cfg.train.pretrain_epochs > 0 and can_pretrain and done[0] != "joint":
        probe = nn.Linear(model.code_dim, len(prepared.labels)).to(device)
        params = [p for n, p in model.named_parameters() if not n.startswith("temporal.")] + list(probe.parameters())
        opt, sched = pretrain_optimizer(params, cfg, math.ceil(len(x_tr) // d.world / cfg.train.pretrain_batch_size))
        x_pv = load_split(prepared, "val", expand=False)[0] if prepared.kind == "stills" else probe_frames(x_va, cfg)
        first = 1
        if done[0] == "pretrain":
            probe.load_state_dict(state["resume"]["probe"])
            opt.load_state_dict(state["resume"]["optimizer"])
            if sched is not None:
                sched.load_state_dict(state["resume"]["scheduler"])
            first = done[1] + 1
        restore_rng()
        for epoch in range(first, cfg.train.pretrain_epochs + 1):
            row = pretrain_epoch(model, probe, opt, sched, x_tr, y_tr, stats, cfg, gen, epoch, progress, d, device)
            sync_buffers(model, d)
            val_loss, val_acc = validate_probe(model, probe, x_pv.reshape(-1, *x_pv.shape[-2:]), y_va, stats, device)
            row.update(val_loss=val_loss, val_acc=val_acc)
            history.append(row)
            if d.main:
                _write_history(history, out)
            save_last("pretrain", epoch, opt, sched, probe, 0.0)
            recon = f", reconstruction MSE {row['recon_loss']:.4f}" if row["recon_loss"] != "" else ""
            log(
                f"pretrain epoch {epoch}: frame loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}{recon} | "
                f"val frame loss {val_loss:.3f} acc {val_acc:.3f} ({row['seconds']:.0f}s)"
            )

    if cfg.train.freeze_encoder and can_pretrain:
        model.encoder.requires_grad_(False)
        for p in model.encoder.parameters():
            p.grad = None  # the last pretraining step's gradients would otherwise linger through joint training
    steps = math.ceil(len(x_tr) // d.world / cfg.train.batch_size)  # per process
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.train.lr, total_steps=max(1, cfg.train.epochs * steps), pct_start=0.15
    )
    first = 1
    if done[0] == "joint":
        opt.load_state_dict(state["resume"]["optimizer"])
        sched.load_state_dict(state["resume"]["scheduler"])
        first = done[1] + 1
        restore_rng()
    elif done[0] == "none" or cfg.train.pretrain_epochs == 0:
        restore_rng()
    epoch = first - 1
    if stale >= cfg.train.patience:
        first = cfg.train.epochs + 1  # the interrupted run had already stopped early
    joint_start = time.time()
    for epoch in range(first, cfg.train.epochs + 1):
        row = joint_epoch(model, opt, sched, x_tr, y_tr, stats, cfg, gen, epoch, frames, progress, d, device)
        sync_buffers(model, d)
        val_loss, val_acc = validate(model, x_va, y_va, stats, cfg, device)
        row.update(val_loss=val_loss, val_acc=val_acc)
        history.append(row)
        if d.main:
            _write_history(history, out)
        improved = (val_acc, -val_loss) > (best[0], -best[1])
        if improved:
            best, best_epoch, stale = (val_acc, val_loss), epoch, 0
            if d.main:
                atomic_save(_checkpoint(model, cfg, prepared, stats, epoch, val_acc), out / "best.pt")
        else:
            stale += 1
        log(
            f"epoch {epoch}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
            f"val loss {val_loss:.3f} acc {val_acc:.3f}{' *' if improved else ''} ({row['seconds']:.0f}s)"
        )
        save_last("joint", epoch, opt, sched, None, val_acc)
        out_of_time = bool(cfg.train.max_minutes) and time.time() - joint_start > 60 * cfg.train.max_minutes
        # rank 0 decides: clocks (and, across machines, floats) differ, and a process that stops alone
        # would leave the others waiting in all-reduce
        if agree(stale >= cfg.train.patience or out_of_time, d):
            log("early stopping: no validation improvement" if stale >= cfg.train.patience else "time budget reached")
            break
    if d.main:
        from vemo.reporting.plots import plot_curves

        plot_curves(out / "history.csv", out / "curves.png")
    return TrainResult(
        out / "best.pt", best_epoch, best[0], epoch, time.time() - started, n_params, d.world, _weights_sha(model)
    )


def _weights_sha(model: nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

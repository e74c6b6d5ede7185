"""`vemo train`: frame pretraining (encoder + autoencoder), then joint training on clips.

Plain PyTorch rather than Lightning, so the two-stage schedule, the per-clip reconstruction subset,
resume and data-parallel training (DDP) stay explicit. `train()` reads top to bottom: set up a
`Run` (data, model, resumed `TrainState`), the pretraining stage, freeze, the joint stage.

Stage 1 (`pretrain_epochs`): the frame encoder learns from single frames: a throw-away linear
classifier on each frame's code, plus, for autoencoder variants, reconstruction of the clean frame
from a noisy one (the denoising autoencoder pretraining). Frames, not clips: the LSTM is idle, so a
few frames per clip suffice, at a fraction of a joint epoch's cost.
Stage 2 (all variants): cross-entropy on clips + `recon_weight` x reconstruction of `recon_frames`
frames per clip. Validation every epoch, early stopping on validation accuracy (ties broken by lower
loss), best and last checkpoints, history as CSV and PNG.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vemo.checkpoint import Checkpoint, init_from
from vemo.config import Config
from vemo.data.loading.loader import expand_batch, iterate, load_split, model_inputs, normalize
from vemo.data.loading.prepare import Prepared
from vemo.data.preprocessing.augment import augment_clips, random_erase
from vemo.data.preprocessing.stills import with_onsets
from vemo.models.registry import count_parameters, model_from_config, to_channels_last
from vemo.training.distributed import Dist, agree, data_parallel, device_for, resolve_device, setup, sync_buffers
from vemo.training.run_folder import LOSS_MEANING, write_run_records
from vemo.training.state import TrainState, checkpoint_of, load_resume, state_from

ALONE = Dist()
NEUTRAL = "neutral"  # the label whose stills give other sequences their onset (train.onset)
CPU = torch.device("cpu")


# (section, key) -> (lowest, highest or None, whether each bound itself is allowed): what a run can train with
RANGES = {
    ("train", "epochs"): (1, None, "[]"),
    ("train", "patience"): (1, None, "[]"),
    ("train", "batch_size"): (1, None, "[]"),
    ("train", "pretrain_epochs"): (0, None, "[]"),
    ("train", "pretrain_batch_size"): (1, None, "[]"),
    ("train", "pretrain_frames"): (1, None, "[]"),
    ("train", "pretrain_from"): (0, 1, "[)"),
    ("train", "recon_frames"): (1, None, "[]"),
    ("train", "recon_fraction"): (0, 1, "(]"),
    ("train", "lr"): (0, None, "(]"),
    ("train", "pretrain_lr"): (0, None, "(]"),
    ("train", "weight_decay"): (0, None, "[]"),
    ("train", "label_smoothing"): (0, 1, "[]"),
    ("train", "recon_weight"): (0, None, "[]"),
    ("train", "noise_std"): (0, None, "[]"),
    ("train", "max_minutes"): (0, None, "[]"),
    ("train", "aug_shift"): (0, 1, "[]"),
    ("train", "aug_rotate"): (0, 180, "[]"),
    ("train", "aug_scale"): (0, 1, "[]"),
    ("train", "aug_erase"): (0, 1, "[]"),
    ("train", "onset"): (0, 1, "[]"),
    ("model", "width"): (1, None, "[]"),
    ("model", "input_pool"): (1, None, "[]"),
    ("model", "feature_dim"): (1, None, "[]"),
    ("model", "bottleneck_dim"): (1, None, "[]"),
    ("model", "hidden"): (1, None, "[]"),
    ("model", "lstm_layers"): (1, None, "[]"),
    ("model", "dropout"): (0, 1, "[]"),
    ("prepare", "frames"): (1, None, "[]"),
    ("prepare", "size"): (8, None, "[]"),
}


def check_ranges(cfg: Config) -> None:
    """Refuse a number no run can train with, naming the key and the value (label_smoothing 2, width 0, a
    negative or NaN learning rate): found here, before any data is read, not by torch minutes later."""
    for (section, key), (low, high, bounds) in RANGES.items():
        value = getattr(getattr(cfg, section), key)
        above = value >= low if bounds[0] == "[" else value > low  # False for NaN, as it should be
        below = high is None or (value <= high if bounds[1] == "]" else value < high)
        if isinstance(value, bool) or not (above and below):
            bound = f"at least {low}" if bounds[0] == "[" else f"above {low}"
            if high is not None:
                bound += f" and at most {high}" if bounds[1] == "]" else f" and below {high}"
            raise ValueError(f"{section}.{key} must be {bound} (got {value})")


def check_train_config(cfg: Config) -> None:
    """Refuse settings training cannot run with, in one line each; `vemo train` calls this before it
    touches the run folder or the data, and `train` again for callers of the library."""
    t = cfg.train
    if t.device != "auto":
        resolve_device(t.device)  # a GPU asked for but missing: a clear line, not CUDA's assertion later
    check_ranges(cfg)
    if t.pretrain_schedule not in ("constant", "onecycle", "cosine"):
        raise ValueError(f"train.pretrain_schedule must be constant, onecycle or cosine, not {t.pretrain_schedule!r}")
    if t.pretrain_optimizer not in ("adamw", "sgd"):
        raise ValueError(f"train.pretrain_optimizer must be 'adamw' or 'sgd', not {t.pretrain_optimizer!r}")


def check_trainable(prepared: Prepared) -> None:
    """Refuse data whose split left nothing to train on or to validate with, saying why and what to do
    (a few actors all go to test: such data is for `vemo evaluate`)."""
    n = {split: sum(counts.values()) for split, counts in prepared.counts.items()}
    if n.get("train") and n.get("val"):
        return
    held = ", ".join(f"{split} {k}" for split, k in n.items()) or "no items"
    groups = len({it["group"] for it in prepared.items})
    if prepared.items and all(it.get("prescribed") for it in prepared.items):
        why = (
            "the dataset's own split leaves train or val empty (a test-only copy? FER2013's val is 10 % of each "
            "class of Training): evaluate it with `vemo evaluate`, or add the Training images"
        )
    elif groups < 3:
        why = (
            f"its {groups} actor(s) are too few for an actor-independent split (at least 3), so every clip went "
            "to test: score a trained model on it with `vemo evaluate`, or train on data with more actors"
        )
    else:
        why = "the split left train or val empty: see prepare.val_fraction and prepare.test_fraction"
    raise ValueError(f"{prepared.path}: nothing to train on ({held}): {why}")


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
    best_val_loss: float | None = None
    stopped: str = ""  # why the joint stage ended: "early stopping", "time budget" or "all epochs"
    pretrain_epochs_run: int = 0
    pretrain_seconds: float = 0.0  # training passes of each stage (validation excluded), from history
    joint_seconds: float = 0.0
    loss: str = LOSS_MEANING  # what history's train_loss and val_loss are


def _inputs(xb: torch.Tensor, stats: dict, cfg: Config, gen: torch.Generator, train: bool, device=CPU):
    """Normalised clean clips, and the (augmented, noisy) version the model sees, both on `device`
    (uint8 batches travel, 4x smaller than floats; the augmentation runs there too)."""
    clean = normalize(xb.to(device), stats)
    if not train:
        return clean, clean
    t = cfg.train
    if t.augment:
        clean = augment_clips(clean, gen, t.aug_shift, t.aug_rotate, t.aug_scale)
    noisy = random_erase(clean, t.aug_erase, gen) if t.augment else clean  # the autoencoder fills the hole in
    if not t.noise_std:
        return clean, noisy
    return clean, noisy + t.noise_std * torch.randn(clean.shape, generator=gen).to(device)


def _pick_frames(b: int, t: int, k: int, gen: torch.Generator, first: int = 0) -> torch.Tensor:
    """k distinct random frame indices per clip among frames first..t-1, as flat indices into (b*t)."""
    k = min(k, t - first)
    idx = first + torch.argsort(torch.rand(b, t - first, generator=gen), dim=1)[:, :k]
    return (idx + torch.arange(b).unsqueeze(1) * t).reshape(-1)


def _frames(clips: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """Rows `pick` of (B, T, ...) clips flattened to (B*T, ...)."""
    return clips.reshape(-1, *clips.shape[2:])[pick]


def _recon_loss(model: nn.Module, codes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Reconstruction MSE of frames `targets` (N, S, S) from their codes (N, D)."""
    return F.mse_loss(model.reconstruct(codes).squeeze(1), targets)


class JointObjective(nn.Module):
    """What one joint step computes, as one module so that DDP can wrap it: clip logits, and the
    reconstruction MSE of the frames `pick` (flat indices into B*T) when given. The reconstruction
    decodes codes from the same forward pass (`model.reconstruct`, not `model.forward`); inside this
    `forward`, DDP sees the decoder's parameters take part in the step like every other one."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, noisy: torch.Tensor, clean: torch.Tensor, pick: torch.Tensor | None = None):
        out = self.model(noisy)
        rec = None if pick is None else _recon_loss(self.model, _frames(out.codes, pick), _frames(clean, pick))
        return out.logits, rec


class FramePretrainer(nn.Module):
    """What one frame-pretraining step computes, as one module so that DDP can wrap it: the throw-away
    `probe`'s logits on the codes of `frames` (N, S, S), and, when `targets` (M <= N clean frames) are
    given, the reconstruction MSE of the first M frames from their codes. `model.encode_frames` and
    `model.reconstruct` bypass `model.forward`, so DDP would not see them unless called from here."""

    def __init__(self, model: nn.Module, probe: nn.Module):
        super().__init__()
        self.model, self.probe = model, probe

    def forward(self, frames: torch.Tensor, targets: torch.Tensor | None = None):
        codes = self.model.encode_frames(frames)
        rec = None if targets is None else _recon_loss(self.model, codes[: len(targets)], targets)
        return self.probe(codes), rec

    def idle(self) -> list:
        """Parameters pretraining leaves alone (the temporal head): DDP must not wait for their gradients."""
        return [p for n, p in self.model.named_parameters() if n.startswith("temporal.")]


def _row(stage: str, epoch: int, loss: float, acc: float, recon, lr: float, start: float) -> dict:
    """One history.csv row (the caller adds the validation columns)."""
    return {
        "stage": stage,
        "epoch": epoch,
        "train_loss": loss,
        "train_acc": acc,
        "recon_loss": recon,
        "lr": lr,
        "seconds": time.time() - start,
    }


def optimizer_step(loss: torch.Tensor, opt, sched, params: list, clip: float = 0.0) -> None:
    """The one update rule of both stages: backward (under DDP, that averages the gradients across
    processes), optionally clip their norm (over `params`, the parameters this stage trains), step the
    optimiser and schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    if sched is not None:
        sched.step()


def _trained(opt) -> list:
    """The parameters `opt` updates: what a stage trains (clipping runs over these)."""
    return [p for group in opt.param_groups for p in group["params"]]


def steps_per_epoch(n: int, d: Dist, batch_size: int) -> int:
    """Optimiser steps in one epoch of `n` clips on each of d.world processes (the progress bar and the
    learning-rate schedules count the same steps)."""
    return math.ceil(n // d.world / batch_size)


def _resume_stage(run: Run, stage: str, opt, sched, probe: nn.Module | None = None) -> int:
    """The first epoch to run of `stage`: 1, or the one after the interrupted run's last epoch of it, with
    its optimiser, schedule (and pretraining probe) restored."""
    if run.state.stage != stage:
        return 1
    r = run.saved.resume
    if probe is not None:
        probe.load_state_dict(r["probe"])
    opt.load_state_dict(r["optimizer"])
    if sched is not None:
        sched.load_state_dict(r["scheduler"])
    return run.state.epoch + 1


def _batches(x, y, batch_size: int, gen, d: Dist, desc: str, progress: bool):
    """One epoch of shuffled training batches of this process's shard, behind a progress bar."""
    return tqdm(
        iterate(x, y, batch_size, True, gen, shard=(d.rank, d.world)),
        total=steps_per_epoch(len(x), d, batch_size),
        desc=desc,
        disable=not progress,
        leave=False,
    )


def pretrain_epoch(run: Run, probe: nn.Module, opt, sched, epoch: int, step: nn.Module | None = None) -> dict:
    """Stage 1, one epoch: train the frame encoder (and the autoencoder, if any) on single frames.

    Each step takes `pretrain_frames` random frames per clip and trains (a) a throw-away linear
    classifier `probe` on the per-frame codes with the clip's label and (b) for autoencoder variants,
    the denoising reconstruction. Frames come from the later part of each clip (`pretrain_from`):
    acted expressions start near neutral, and onset frames labelled with the clip's emotion are
    mostly label noise, which stalls a frame classifier. A clip of T frames costs T encoder passes per
    joint step but carries one label, so an encoder learns far faster from frames; the sequence model
    then starts from useful features instead of noise. Stills datasets train on the stills themselves.
    `step`: the stage's `FramePretrainer` of the model and `probe`, in DDP when several processes train
    (built here when not given).
    """
    model, cfg, gen, d, device = run.model, run.cfg, run.gen, run.d, run.device
    if step is None:
        step = FramePretrainer(model, probe)
        step = data_parallel(step, d, device, idle=step.idle())
    model.train()
    use_ae = model.has_autoencoder
    start, ce_sum, rec_sum, correct, n = time.time(), 0.0, 0.0, 0, 0
    bs = cfg.train.pretrain_batch_size
    params = _trained(opt)
    desc = f"pretrain frames {epoch}/{cfg.train.pretrain_epochs}"
    bar = _batches(run.data["x_train"], run.data["y_train"], bs, gen, d, desc, run.progress)
    for xb, yb in bar:
        clean, noisy = _inputs(xb, run.stats, cfg, gen, train=True, device=device)
        yb = yb.to(device)
        b, t = clean.shape[:2]
        pick = _pick_frames(b, t, cfg.train.pretrain_frames, gen, first=int(cfg.train.pretrain_from * t))
        m = max(1, round(cfg.train.recon_fraction * len(pick)))  # picks are random: any m of them will do
        logits, rec = step(_frames(noisy, pick), _frames(clean, pick[:m]) if use_ae else None)
        labels = yb.repeat_interleave(len(pick) // b)
        ce = F.cross_entropy(logits, labels, label_smoothing=cfg.train.label_smoothing)
        loss = ce
        if use_ae:
            loss = loss + cfg.train.recon_weight * rec
            rec_sum += rec.item() * len(pick)
        optimizer_step(loss, opt, sched, params)
        ce_sum += _plain_ce(ce, logits, labels, cfg) * len(pick)  # history's train_loss: as val_loss
        correct += (logits.argmax(1) == labels).sum().item()
        n += len(pick)
        bar.set_postfix(ce=f"{ce_sum / n:.3f}", acc=f"{correct / n:.3f}")
    return _row(
        "pretrain", epoch, ce_sum / n, correct / n, rec_sum / n if use_ae else "", opt.param_groups[0]["lr"], start
    )


def _plain_ce(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, cfg: Config, extra: bool = False) -> float:
    """The batch's plain cross-entropy, what history records as train_loss so that it is the same
    quantity as val_loss: `loss` itself when it is that (no label smoothing, no `extra` reconstruction
    term in it), else recomputed from the logits without either."""
    if cfg.train.label_smoothing or extra:
        return F.cross_entropy(logits.detach(), y).item()
    return loss.item()


def joint_epoch(run: Run, opt, sched, epoch: int, step: nn.Module | None = None) -> dict:
    """Stage 2, one epoch: cross-entropy on clips + weighted reconstruction of a few frames per clip.
    `step`: the stage's `JointObjective` of the model, in DDP when several processes train (built here
    when not given)."""
    model, cfg, gen, d, device = run.model, run.cfg, run.gen, run.d, run.device
    use_ae = model.has_autoencoder and cfg.train.recon_weight > 0
    if step is None:
        step = joint_objective(model, cfg, d, device)
    model.train()
    if cfg.train.freeze_encoder and model.has_frame_encoder:
        model.encoder.eval()  # frozen: batch-norm statistics stay those of pretraining
    t0, total, correct, rec_total, n = time.time(), 0.0, 0, 0.0, 0
    params = _trained(opt)
    desc = f"train {epoch}/{cfg.train.epochs}"
    bar = _batches(run.data["x_train"], run.data["y_train"], cfg.train.batch_size, gen, d, desc, run.progress)
    for xb, yb in bar:
        clean, noisy = _inputs(run.sequences(xb, yb), run.stats, cfg, gen, train=True, device=device)
        yb = yb.to(device)
        pick = _pick_frames(*clean.shape[:2], cfg.train.recon_frames, gen) if use_ae else None
        logits, rec = step(noisy, clean, pick)
        loss = F.cross_entropy(logits, yb, label_smoothing=cfg.train.label_smoothing)
        if use_ae:
            loss = loss + cfg.train.recon_weight * rec
            rec_total += rec.item() * len(yb)
        optimizer_step(loss, opt, sched, params, clip=5.0)  # params: what this stage trains
        total += _plain_ce(loss, logits, yb, cfg, use_ae) * len(yb)  # history's train_loss: as val_loss
        correct += (logits.argmax(1) == yb).sum().item()
        n += len(yb)
        bar.set_postfix(loss=f"{total / n:.3f}", acc=f"{correct / n:.3f}")
    return _row("joint", epoch, total / n, correct / n, rec_total / n if use_ae else "", sched.get_last_lr()[0], t0)


def joint_objective(model: nn.Module, cfg: Config, d: Dist = ALONE, device=CPU) -> nn.Module:
    """The joint stage's `JointObjective`, in DDP when several processes train. A decoder that the
    stage does not use (`recon_weight` 0) is idle: DDP must not wait for its gradients."""
    idle = [] if cfg.train.recon_weight > 0 or not model.has_autoencoder else list(model.decoder.parameters())
    return data_parallel(JointObjective(model), d, device, idle=idle)


def _loss_and_accuracy(logits_of, x, y, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `logits_of(uint8 batch)` over (x, y), in order."""
    total, correct = 0.0, 0
    for xb, yb in iterate(x, y, batch_size, shuffle=False):
        logits = logits_of(xb).cpu()
        total += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return total / max(len(x), 1), correct / max(len(x), 1)


@torch.no_grad()
def validate(model, x, y, stats, cfg: Config, device=CPU) -> tuple[float, float]:
    model.eval()
    return _loss_and_accuracy(
        lambda xb: model(model_inputs(xb, stats).to(device)).logits, x, y, max(cfg.train.batch_size, 32)
    )


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
    return _loss_and_accuracy(lambda xb: probe(model.encode_frames(normalize(xb, stats).to(device))), x, y, 256)


def pretrain_optimizer(params: list, cfg: Config, steps: int):
    """Optimiser and per-step learning-rate schedule (or None) of frame pretraining, `steps` per epoch."""
    t = cfg.train
    if t.pretrain_optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=t.pretrain_lr, momentum=0.9, nesterov=True, weight_decay=t.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=t.pretrain_lr, weight_decay=t.weight_decay)
    total = max(1, t.pretrain_epochs * steps)
    if t.pretrain_schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.pretrain_lr, total_steps=total, pct_start=0.1)
    if t.pretrain_schedule == "cosine":
        warm = min(2 * steps, total // 10 + 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, None


@dataclass
class Run:
    """One training run's context: settings, data, model, where it runs, where it writes, and its state."""

    cfg: Config
    prepared: Prepared
    out: Path
    model: nn.Module
    d: Dist
    device: torch.device
    gen: torch.Generator
    stats: dict
    data: dict[str, torch.Tensor]  # x_train, y_train (stills unexpanded), x_val, y_val
    state: TrainState
    saved: Checkpoint | None  # the resumed last.pt (optimiser, scheduler, RNG states), None on a fresh start
    log: object
    progress: bool
    started: float = 0.0
    rng_restored: bool = False

    def restore_rng(self) -> None:
        """RNG states as the interrupted run saved them, once, right before the first epoch after resume."""
        if self.saved is None or self.rng_restored:
            return
        r, self.rng_restored = self.saved.resume, True
        self.gen.set_state(r["generator"])
        torch.set_rng_state(r["torch_rng"])
        if torch.cuda.is_available() and r.get("cuda_rng"):
            torch.cuda.set_rng_state_all(r["cuda_rng"])

    def sequences(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """A training batch as the model sees it: stills become fresh T-frame sequences (with neutral
        onsets when `train.onset`), clips pass through."""
        seqs = expand_batch(xb, self.prepared.settings.frames, self.gen)
        if self.cfg.train.onset > 0 and xb.shape[1] == 1:
            seqs = with_onsets(seqs, yb, self.prepared.labels.index(NEUTRAL), self.cfg.train.onset, self.gen)
        return seqs

    def record(self, row: dict) -> None:
        self.state.history.append(row)
        if self.d.main:
            write_run_records(self.out, history=self.state.history)

    def save_last(self, stage: str, epoch: int, opt, sched, probe, val_acc: float) -> None:
        """last.pt: the weights and everything resume needs, after every epoch (rank 0, atomically)."""
        self.state.stage, self.state.epoch = stage, epoch
        if not self.d.main:
            return
        s = self.state
        ckpt = checkpoint_of(self.model, self.cfg, self.prepared, self.stats, epoch, val_acc)
        ckpt.resume = {
            "stage": stage,
            "epoch": epoch,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "probe": probe.state_dict() if probe is not None else None,
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "best": list(s.best),
            "best_epoch": s.best_epoch,
            "stale": s.stale,
            "history": s.history,
            "elapsed": time.time() - self.started,
        }
        ckpt.save(self.out / "last.pt")


def _check_run_fits(cfg: Config, prepared: Prepared, model: nn.Module) -> None:
    """Settings that are valid alone but not for this data or model: a frozen encoder that would never be
    trained, neutral onsets for data without neutral stills, onsets in sequences too short to have one."""
    untrained_encoder = cfg.train.pretrain_epochs == 0 and not cfg.train.init_from
    if cfg.train.freeze_encoder and model.has_frame_encoder and untrained_encoder:
        raise ValueError(
            "train.freeze_encoder with train.pretrain_epochs 0 would train on a random frame encoder that never "
            "learns: pretrain it (train.pretrain_epochs > 0), start from trained weights (train.init_from) or set "
            "train.freeze_encoder=false"
        )
    if cfg.train.onset > 0 and (prepared.kind != "stills" or NEUTRAL not in prepared.labels):
        raise ValueError(
            f"train.onset gives sequences made from stills a {NEUTRAL!r} onset: it needs a stills dataset with a "
            f"{NEUTRAL!r} class (this one: {prepared.kind}, labels {', '.join(prepared.labels)}); set train.onset=0"
        )
    if cfg.train.onset > 0 and prepared.settings.frames < 2:
        raise ValueError("train.onset needs sequences of at least 2 frames (prepare.frames) to start one with neutral")


def _start(cfg: Config, prepared: Prepared, out: Path, progress: bool, log, resume: bool) -> Run:
    """Check settings, join the process group, seed, load the data and build (or restore) the model."""
    check_train_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    # Record the preprocessing the data really had (a cache may come from `--data` with other settings),
    # so the checkpoint describes its inputs and evaluation re-prepares the same frames and split.
    prepared.apply_preprocessing(cfg)
    d = setup(cfg.train.device)
    device = device_for(d, cfg.train.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels once
    if not d.main:
        log, progress = (lambda *_: None), False  # one voice: rank 0 logs and writes
    set_threads(cfg.train.threads)
    gen = seed_everything(cfg.train.seed)
    saved = load_resume(out, cfg, log) if resume else None
    check_trainable(prepared)
    x_tr, y_tr = load_split(prepared, "train", expand=False)  # stills get fresh sequences per batch
    x_va, y_va = load_split(prepared, "val")
    model = model_from_config(cfg.model, len(prepared.labels), prepared.settings.size)
    if cfg.train.init_from and saved is None:  # a resumed run restores its own weights below
        init_from(model, cfg.train.init_from, log)
    _check_run_fits(cfg, prepared, model)
    if cfg.train.channels_last:
        model = to_channels_last(model)
    if d.main:
        write_run_records(out, config=cfg, data_manifest=prepared.path / "manifest.json")
    where = f"; {d.world} processes" if d.active else ""
    n = count_parameters(model)
    log(f"model {cfg.model.name} ({n / 1e6:.2f}M parameters); train {len(x_tr)} clips, val {len(x_va)}{where}")
    state = TrainState()
    if saved is not None:
        model.load_state_dict(saved.weights)
        state = state_from(saved)
        log(f"resuming after {state.stage} epoch {state.epoch} ({state.elapsed / 60:.1f} min trained so far)")
    data = {"x_train": x_tr, "y_train": y_tr, "x_val": x_va, "y_val": y_va}
    run = Run(cfg, prepared, out, model.to(device), d, device, gen, prepared.stats, data, state,
              saved, log, progress)  # fmt: skip
    run.started = time.time() - state.elapsed
    return run


def pretrain_stage(run: Run) -> None:
    """Stage 1: the frame encoder (and autoencoder) learn from single frames, with a throw-away linear
    probe on the codes; each epoch ends with the probe's frame accuracy on val and a resumable last.pt."""
    cfg, model, d, data = run.cfg, run.model, run.d, run.data
    probe = nn.Linear(model.code_dim, len(run.prepared.labels)).to(run.device)
    params = [p for n, p in model.named_parameters() if not n.startswith("temporal.")] + list(probe.parameters())
    steps = steps_per_epoch(len(data["x_train"]), d, cfg.train.pretrain_batch_size)
    opt, sched = pretrain_optimizer(params, cfg, steps)
    x_pv = (
        load_split(run.prepared, "val", expand=False)[0]
        if run.prepared.kind == "stills"
        else probe_frames(data["x_val"], cfg)
    )
    first = _resume_stage(run, "pretrain", opt, sched, probe)
    step = FramePretrainer(model, probe)
    step = data_parallel(step, d, run.device, idle=step.idle())  # one DDP wrapper for the whole stage
    run.restore_rng()
    for epoch in range(first, cfg.train.pretrain_epochs + 1):
        row = pretrain_epoch(run, probe, opt, sched, epoch, step)
        sync_buffers(model, d)
        val_loss, val_acc = validate_probe(
            model, probe, x_pv.reshape(-1, *x_pv.shape[-2:]), data["y_val"], run.stats, run.device
        )
        row.update(val_loss=val_loss, val_acc=val_acc)
        run.record(row)
        run.save_last("pretrain", epoch, opt, sched, probe, 0.0)
        recon = f", reconstruction MSE {row['recon_loss']:.4f}" if row["recon_loss"] != "" else ""
        run.log(
            f"pretrain epoch {epoch}: frame loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}{recon} | "
            f"val frame loss {val_loss:.3f} acc {val_acc:.3f} ({row['seconds']:.0f}s)"
        )


def freeze(module: nn.Module) -> None:
    """No gradients for `module` from now on, and none left over from the last pretraining step (they
    would otherwise count in the joint stage's gradient-norm clipping)."""
    module.requires_grad_(False)
    for p in module.parameters():
        p.grad = None


def joint_stage(run: Run) -> int:
    """Stage 2: clips through the whole model; validation, best.pt and early stopping every epoch.
    Returns the last epoch run."""
    cfg, model, d, data, state = run.cfg, run.model, run.d, run.data, run.state
    params = [p for p in model.parameters() if p.requires_grad]
    steps = steps_per_epoch(len(data["x_train"]), d, cfg.train.batch_size)
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.train.lr, total_steps=max(1, cfg.train.epochs * steps), pct_start=0.15
    )
    first = _resume_stage(run, "joint", opt, sched)
    run.restore_rng()
    if state.stale >= cfg.train.patience:
        return state.epoch  # the interrupted run had already stopped early
    step = joint_objective(model, cfg, d, run.device)  # one DDP wrapper for the whole stage
    joint_start, epoch = time.time(), first - 1
    for epoch in range(first, cfg.train.epochs + 1):
        row = joint_epoch(run, opt, sched, epoch, step)
        sync_buffers(model, d)
        val_loss, val_acc = validate(model, data["x_val"], data["y_val"], run.stats, cfg, run.device)
        row.update(val_loss=val_loss, val_acc=val_acc)
        run.record(row)
        improved = state.improves(val_acc, val_loss)
        if improved:
            state.best, state.best_epoch, state.stale = (val_acc, val_loss), epoch, 0
            if d.main:
                checkpoint_of(model, cfg, run.prepared, run.stats, epoch, val_acc).save(run.out / "best.pt")
        else:
            state.stale += 1
        run.log(
            f"epoch {epoch}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
            f"val loss {val_loss:.3f} acc {val_acc:.3f}{' *' if improved else ''} ({row['seconds']:.0f}s)"
        )
        run.save_last("joint", epoch, opt, sched, None, val_acc)
        out_of_time = bool(cfg.train.max_minutes) and time.time() - joint_start > 60 * cfg.train.max_minutes
        # rank 0 decides: clocks (and, across machines, floats) differ, and a process that stops alone
        # would leave the others waiting in all-reduce
        if agree(state.stale >= cfg.train.patience or out_of_time, d):
            run.log(
                "early stopping: no validation improvement"
                if state.stale >= cfg.train.patience
                else "time budget reached"
            )
            break
    return epoch


def train(
    cfg: Config, prepared: Prepared, out_dir: str | Path, progress: bool = True, log=print, resume: bool = False
) -> TrainResult:
    """Train `cfg.model` on the prepared data's train split, selecting on its val split.

    After every epoch (of either stage) `last.pt` holds the model and the full resume state (optimiser,
    scheduler, RNG states, early-stopping counters, history), written atomically; `resume=True`
    continues from it and, with the same config on the same machine, ends with the same weights as an
    uninterrupted run.
    """
    run = _start(cfg, prepared, Path(out_dir), progress, log, resume)
    model = run.model
    if cfg.train.pretrain_epochs > 0 and not model.has_frame_encoder:
        log(f"{cfg.model.name} has no frame encoder: frame pretraining skipped")
    if cfg.train.pretrain_epochs > 0 and model.has_frame_encoder and run.state.stage != "joint":
        pretrain_stage(run)
    if cfg.train.freeze_encoder and model.has_frame_encoder:
        freeze(model.encoder)
    last_epoch = joint_stage(run)
    s, t = run.state, cfg.train
    # joint_stage ends on patience, on the time budget, or after the last epoch (it logs which)
    stopped = "early stopping" if s.stale >= t.patience else "time budget" if last_epoch < t.epochs else "all epochs"
    seconds = {
        stage: [float(r["seconds"]) for r in s.history if r["stage"] == stage] for stage in ("pretrain", "joint")
    }
    result = TrainResult(
        run.out / "best.pt", s.best_epoch, s.best[0], last_epoch, time.time() - run.started, count_parameters(model),
        run.d.world, _weights_sha(model),
        best_val_loss=s.best[1] if math.isfinite(s.best[1]) else None,
        stopped=stopped,
        pretrain_epochs_run=len(seconds["pretrain"]),
        pretrain_seconds=sum(seconds["pretrain"]),
        joint_seconds=sum(seconds["joint"]),
    )  # fmt: skip
    if run.d.main:
        write_run_records(run.out, history=s.history, summary=asdict(result))
    return result


def _weights_sha(model: nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

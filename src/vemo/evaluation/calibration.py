"""Calibrated probabilities: temperature scaling (Guo et al., 2017) and expected calibration error.

A network trained with cross-entropy is usually over-confident: among frames it calls "happy" with
0.9, fewer than 90% are happy. Dividing its logits by one scalar temperature T > 1, fitted to minimise
the negative log-likelihood on the *validation* split, fixes most of that without changing a single
prediction (the argmax is unchanged), so accuracy stays what it was and a confidence can be read as
a probability. The checkpoint stores T (`Checkpoint.calibration`, read as `Checkpoint.temperature`);
evaluation, `predict` and the ONNX export all divide by it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vemo.checkpoint import SHIPPED, CheckpointError, load_checkpoint, resolve_checkpoint
from vemo.data.loading.loader import load_split
from vemo.data.loading.prepare import Prepared
from vemo.evaluation.inference import check_frame_size, predict
from vemo.training.distributed import resolve_device


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T > 0 minimising NLL of softmax(logits / T): a convex 1-D problem in log T, solved by L-BFGS."""
    logits, targets = logits.double(), targets.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Per confidence bin (equal width on [0, 1]): mean confidence, accuracy and count (a reliability diagram)."""
    conf = probs.max(1)
    right = probs.argmax(1) == targets
    which = np.minimum((conf * bins).astype(int), bins - 1)
    rows: dict[str, list] = {"confidence": [], "accuracy": [], "count": [], "lower": [], "upper": []}
    for b in range(bins):
        sel = which == b
        rows["lower"].append(b / bins)
        rows["upper"].append((b + 1) / bins)
        rows["count"].append(int(sel.sum()))
        rows["confidence"].append(float(conf[sel].mean()) if sel.any() else float("nan"))
        rows["accuracy"].append(float(right[sel].mean()) if sel.any() else float("nan"))
    return rows


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """ECE: the count-weighted mean gap |accuracy - confidence| over equal-width confidence bins."""
    r = reliability(probs, targets, bins)
    n = max(1, sum(r["count"]))
    return float(
        sum(c * abs(a - p) for c, a, p in zip(r["count"], r["accuracy"], r["confidence"], strict=True) if c) / n
    )


def calibrate_checkpoint(
    checkpoint: str | Path,
    prepared: Prepared,
    split: str = "val",
    log=print,
    progress: bool = False,
    device: str = "cpu",
) -> dict:
    """Fit the temperature of `checkpoint` on `split` of the data it was trained on and store it in the
    checkpoint file (atomically). Returns what is stored: T, the split, its size, NLL and ECE before/after.
    `progress`: a bar over the inference; `device`: where the model runs (a run trained on a GPU
    calibrates there)."""
    if str(checkpoint) in SHIPPED:
        raise CheckpointError(f"{checkpoint!r} is a shipped model: calibrate a copy of it (vemo ship), not the package")
    if split not in ("val", "train"):
        raise ValueError(f"calibration fits on the val (or train) split, never on {split!r}: that is for scoring")
    path = resolve_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    check_frame_size(ckpt, prepared)
    x, y = load_split(prepared, split)
    if len(x) == 0:
        raise ValueError(f"cannot calibrate: the {split!r} split of {prepared.path} is empty")
    if list(prepared.labels) != ckpt.labels:
        raise ValueError(f"cannot calibrate on {prepared.path}: its labels differ from the checkpoint's")
    logits = predict(ckpt.build_model().to(resolve_device(device)), x, ckpt.stats, progress=progress)["logits"]
    t = fit_temperature(logits, y)
    before, after = torch.softmax(logits, 1).numpy(), torch.softmax(logits / t, 1).numpy()
    calibration = {
        "temperature": t,
        "split": split,
        "n": len(y),
        "nll_before": float(F.cross_entropy(logits, y)),
        "nll_after": float(F.cross_entropy(logits / t, y)),
        "ece_before": expected_calibration_error(before, y.numpy()),
        "ece_after": expected_calibration_error(after, y.numpy()),
    }
    ckpt.calibration = calibration
    ckpt.save(path)
    log(
        f"calibrated {checkpoint} on {split} ({len(y)} clips): temperature {t:.3f}; "
        f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}, "
        f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}"
    )
    return calibration

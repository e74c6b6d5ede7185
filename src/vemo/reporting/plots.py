"""Figures: training curves and confusion matrices (PNG, written atomically)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vemo.io import atomic_write  # noqa: E402


def _save(fig, path: str | Path) -> None:
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _floats(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])


def plot_curves(history_csv: str | Path, png: str | Path) -> None:
    """Loss and accuracy per joint-training epoch (train vs val), plus pretraining reconstruction loss."""
    with open(history_csv) as fh:
        rows = list(csv.DictReader(fh))
    joint = [r for r in rows if r["stage"] == "joint"]
    pre = [r for r in rows if r["stage"] == "pretrain"]
    ncols = 3 if pre else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.4))
    ep = _floats(joint, "epoch")
    axes[0].plot(ep, _floats(joint, "train_loss"), "o-", label="train")
    axes[0].plot(ep, _floats(joint, "val_loss"), "s-", label="val")
    axes[0].set(title="loss (cross-entropy [+ recon])", xlabel="epoch")
    axes[1].plot(ep, _floats(joint, "train_acc"), "o-", label="train")
    axes[1].plot(ep, _floats(joint, "val_acc"), "s-", label="val")
    axes[1].set(title="accuracy", xlabel="epoch", ylim=(0, 1))
    for ax in axes[:2]:
        ax.legend()
        ax.grid(alpha=0.3)
    if pre:
        axes[2].plot(_floats(pre, "epoch"), _floats(pre, "recon_loss"), "o-", label="pretrain")
        rec = _floats(joint, "recon_loss")
        if np.isfinite(rec).any():
            axes[2].plot(ep + len(pre), rec, "s-", label="joint")
        axes[2].set(title="reconstruction MSE", xlabel="epoch (pretrain, then joint)")
        axes[2].legend()
        axes[2].grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, png)


def plot_confusion(cm: np.ndarray, labels: list[str], png: str | Path) -> None:
    """Counts and row-normalised (recall per true class) side by side."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
    for ax, data, title, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "row-normalised", ".2f")):
        ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.max() > 0 else 1)
        ax.set(
            xticks=range(len(labels)),
            yticks=range(len(labels)),
            xlabel="predicted",
            ylabel="true",
            title=title,
        )
        ax.set_xticklabels(labels, rotation=45, ha="right")
        ax.set_yticklabels(labels)
        hi = data.max() / 2 if data.max() > 0 else 0.5
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(
                    j,
                    i,
                    format(data[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if data[i, j] > hi else "black",
                )
    fig.tight_layout()
    _save(fig, png)


def plot_timeline(rows: list[dict], labels: list[str], png: str | Path, title: str = "") -> None:
    """Smoothed class probabilities over time, one panel per face; grey bands where no face was found."""
    faces = sorted({r["face"] for r in rows if r["face"] >= 0}) or [-1]
    fig, axes = plt.subplots(len(faces), 1, figsize=(8, 2.6 * len(faces)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, face in zip(axes[:, 0], faces, strict=True):
        mine = [r for r in rows if r["face"] == face or r["face"] == -1]
        ok = [r for r in mine if r["status"] == "ok"]
        t = np.array([(r["start"] + r["end"]) / 2 for r in ok])
        for k, lab in enumerate(labels):
            if len(ok):
                ax.plot(t, [r[f"smoothed_{lab}"] for r in ok], "o-", ms=3, color=colors(k), label=lab)
        for r in mine:
            if r["status"] != "ok":
                ax.axvspan(r["start"], r["end"], color="0.85", lw=0)
        ax.set(ylim=(0, 1), ylabel="probability", title=f"{title}  face {face}" if face >= 0 else f"{title}  no face")
        if not ok:
            ax.text(0.5, 0.5, "no face found", ha="center", va="center", transform=ax.transAxes)
    axes[-1, 0].set_xlabel("time (s), window centres; grey: no face")
    axes[0, 0].legend(fontsize=7, ncol=min(7, len(labels)), loc="upper center", bbox_to_anchor=(0.5, 1.45))
    _save(fig, png)

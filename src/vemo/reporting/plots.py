"""Figures (PNG, written atomically): training curves, confusion matrix, reliability diagram, prediction
timeline, robustness curves, embeddings, attention, galleries and the variant comparison.

Figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas they create, never pyplot:
importing vemo must not switch matplotlib's backend (that would break a notebook's inline plots), and
figures made here never enter pyplot's global list, so none is left open.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from vemo.io import atomic_write


def _subplots(*grid: int, figsize: tuple[float, float], **kw):
    """`pyplot.subplots` without pyplot: a standalone Figure (no backend, no global state) and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


def _save(fig: Figure, path: str | Path) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120, bbox_inches="tight"))


def _floats(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])


def _train_val(ax, rows: list[dict], key: str, title: str, x_offset: float = 0.0) -> None:
    ep = _floats(rows, "epoch") + x_offset
    ax.plot(ep, _floats(rows, f"train_{key}"), "o-", ms=3, label="train")
    if np.isfinite(_floats(rows, f"val_{key}")).any():
        ax.plot(ep, _floats(rows, f"val_{key}"), "s-", ms=3, label="val")
    ax.set(title=title, xlabel="epoch")
    ax.legend()
    ax.grid(alpha=0.3)


def plot_curves(history_csv: str | Path, png: str | Path) -> None:
    """Per epoch, train vs val: frame pretraining (frame loss, frame accuracy, reconstruction MSE) on
    the first row when there was any, joint training (clip loss and accuracy) on the last row.

    Both losses are the same quantity, plain cross-entropy: the trainer records it without label
    smoothing and without the reconstruction term (plotted on its own, right) for train as for
    validation (`vemo.training.run_folder.LOSS_MEANING`). Train's is the running mean over the epoch
    on augmented inputs while the weights move, validation's is measured on clean inputs at the
    epoch's end."""
    with open(history_csv) as fh:
        rows = list(csv.DictReader(fh))
    joint = [r for r in rows if r["stage"] == "joint"]
    pre = [r for r in rows if r["stage"] == "pretrain"]
    nrows = 2 if pre else 1
    fig, axes = _subplots(nrows, 3, figsize=(12.6, 3.4 * nrows), squeeze=False)
    if pre:
        _train_val(axes[0, 0], pre, "loss", "frame pretraining: cross-entropy")
        _train_val(axes[0, 1], pre, "acc", "frame pretraining: accuracy (probe)")
        rec = _floats(pre, "recon_loss")
        if np.isfinite(rec).any():
            axes[0, 2].plot(_floats(pre, "epoch"), rec, "o-", ms=3)
            axes[0, 2].set(title="pretraining reconstruction MSE", xlabel="epoch")
            axes[0, 2].grid(alpha=0.3)
        else:
            axes[0, 2].axis("off")
    _train_val(axes[-1, 0], joint, "loss", "clips: cross-entropy (no smoothing, no recon)")
    _train_val(axes[-1, 1], joint, "acc", "clips: accuracy")
    rec = _floats(joint, "recon_loss")
    if np.isfinite(rec).any():
        axes[-1, 2].plot(_floats(joint, "epoch"), rec, "o-", ms=3)
        axes[-1, 2].set(title="joint reconstruction MSE", xlabel="epoch")
        axes[-1, 2].grid(alpha=0.3)
    else:
        axes[-1, 2].axis("off")
    fig.tight_layout()
    _save(fig, png)


def plot_reliability(curves: dict[str, dict], png: str | Path, title: str = "") -> None:
    """Reliability diagram: accuracy against confidence per confidence bin, one line per named curve
    (e.g. before and after temperature scaling); the diagonal is perfect calibration. Bar heights
    below show how many predictions fall in each bin."""
    fig, (ax, bars) = _subplots(2, 1, figsize=(4.8, 5.6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    for name, r in curves.items():
        conf, acc = np.array(r["confidence"], float), np.array(r["accuracy"], float)
        ok = np.isfinite(conf)
        ax.plot(conf[ok], acc[ok], "o-", ms=4, label=name)
        mid = (np.array(r["lower"]) + np.array(r["upper"])) / 2
        bars.bar(mid, r["count"], width=np.diff(r["lower"][:2])[0] * 0.9 if len(r["lower"]) > 1 else 0.05, alpha=0.5)
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bars.set(xlabel="confidence (max probability)", ylabel="count")
    fig.tight_layout()
    _save(fig, png)


def plot_confusion(cm: np.ndarray, labels: list[str], png: str | Path) -> None:
    """Counts and row-normalised (recall per true class) side by side."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    fig, axes = _subplots(1, 2, figsize=(10, 4.3))
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
    fig, axes = _subplots(len(faces), 1, figsize=(8, 2.6 * len(faces)), squeeze=False)
    colors = matplotlib.colormaps["tab10"]
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
    if any(r["status"] == "ok" for r in rows):  # a video without a face has no curves to name
        axes[0, 0].legend(fontsize=7, ncol=min(7, len(labels)), loc="upper center", bbox_to_anchor=(0.5, 1.45))
    _save(fig, png)


def plot_robustness(curves: dict[str, list[dict]], png: str | Path) -> None:
    """Accuracy vs perturbation level, one panel per perturbation, one line per model (mean +- std if
    rows carry `accuracy_std`)."""
    kinds = sorted({r["kind"] for rows in curves.values() for r in rows})
    fig, axes = _subplots(1, len(kinds), figsize=(4 * len(kinds), 3.3), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for name, rows in curves.items():
            mine = [r for r in rows if r["kind"] == kind]
            lv = np.array([r["level"] for r in mine])
            acc = np.array([r["accuracy"] for r in mine])
            ax.plot(lv, acc, "o-", label=name)
            if mine and "accuracy_std" in mine[0]:
                sd = np.array([r["accuracy_std"] for r in mine])
                ax.fill_between(lv, acc - sd, acc + sd, alpha=0.15)
        ax.set(title=kind, xlabel="level", ylabel="accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, png)


def plot_embeddings(
    embedding: np.ndarray, truth: np.ndarray, labels: list[str], png: str | Path, seed: int = 0
) -> None:
    """PCA and t-SNE of clip embeddings, coloured by true label (t-SNE needs >= 10 clips)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(embedding, dtype=np.float64)
    panels = [("PCA", PCA(n_components=2, random_state=seed).fit_transform(x))]
    if len(x) >= 10:
        perplexity = float(min(30, (len(x) - 1) / 3))
        panels.append(("t-SNE", TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)))
    fig, axes = _subplots(1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False)
    colors = matplotlib.colormaps["tab10"]
    for ax, (title, z) in zip(axes[0], panels, strict=True):
        for k, lab in enumerate(labels):
            m = truth == k
            if m.any():
                ax.scatter(z[m, 0], z[m, 1], s=12, color=colors(k), label=lab, alpha=0.8)
        ax.set(title=f"{title} of test-clip embeddings", xticks=[], yticks=[])
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, png)


def plot_frame_strips(frames: np.ndarray, weights: np.ndarray | None, titles: list[str], png: str | Path) -> None:
    """A strip of frames per clip (the T frames the model reads) with, when the model has attention, its
    weight per frame as a bar under each frame."""
    n, t = frames.shape[:2]
    per_clip = 2 if weights is not None else 1
    ratios = {"height_ratios": [3, 1] * n} if weights is not None else {}
    fig, axes = _subplots(
        per_clip * n, t, figsize=(0.8 * t, (1.9 if weights is not None else 1.25) * n), gridspec_kw=ratios
    )
    axes = np.atleast_2d(axes)
    for i in range(n):
        for j in range(t):
            ax = axes[per_clip * i, j]
            ax.imshow(frames[i, j], cmap="gray", vmin=0, vmax=255)
            ax.axis("off")
            if weights is not None:
                bar = axes[per_clip * i + 1, j]
                bar.bar([0], [weights[i, j]], color="tab:orange")
                bar.set_ylim(0, float(weights[i].max()) * 1.1 or 1)
                bar.axis("off")
        axes[per_clip * i, 0].set_title(titles[i], fontsize=8, loc="left")
    fig.tight_layout(pad=0.2)
    _save(fig, png)


def plot_gallery(frames: np.ndarray, titles: list[str], png: str | Path, cols: int = 6) -> None:
    """A grid of frames with captions (misclassified clips: true -> predicted)."""
    n = max(1, len(frames))
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(frames):
            ax.imshow(frames[k], cmap="gray", vmin=0, vmax=255)
            ax.set_title(titles[k], fontsize=7)
    fig.tight_layout(pad=0.3)
    _save(fig, png)


def plot_compare(summary: list[dict], png: str | Path) -> None:
    """Mean +- std of accuracy and macro-F1 per variant over seeds."""
    names = [s["model"] for s in summary]
    x = np.arange(len(names))
    fig, ax = _subplots(1, 1, figsize=(1.6 * len(names) + 2, 3.4))
    for k, (key, label) in enumerate((("accuracy", "accuracy"), ("macro_f1", "macro-F1"))):
        means = [s[f"{key}_mean"] for s in summary]
        stds = [s[f"{key}_std"] for s in summary]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=15)
    ax.set(ylim=(0, 1), ylabel="test score (mean +- std over seeds)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, png)

"""`vemo evaluate`: a checkpoint on a prepared split -> metrics.json, confusion matrix, predictions."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from vemo.data.loader import load_split
from vemo.data.prepare import KEYED_SETTINGS as PREPARE_KEYED
from vemo.data.prepare import Prepared
from vemo.evaluation.inference import predict
from vemo.evaluation.metrics import classification_metrics, format_table
from vemo.io import write_json, write_text
from vemo.reporting.plots import plot_confusion
from vemo.training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint


def _check_compatible(ckpt: dict, prepared: Prepared) -> None:
    size = ckpt["config"]["prepare"]["size"]
    if prepared.manifest["settings"]["size"] != size:
        raise CheckpointError(
            f"the checkpoint expects {size}x{size} frames but the data was prepared at "
            f"{prepared.manifest['settings']['size']}; prepare again with prepare.size={size}"
        )
    if list(ckpt["labels"]) != list(prepared.labels):
        raise CheckpointError(f"label sets differ: checkpoint {ckpt['labels']} vs data {prepared.labels}")


def _differences(ckpt: dict, prepared: Prepared) -> list[str]:
    """Preprocessing or split settings in which the data differs from what the model was trained on."""
    trained, data = ckpt["config"]["prepare"], prepared.manifest["settings"]
    return [
        f"{k}: trained {trained.get(k)!r}, data {data.get(k)!r}" for k in PREPARE_KEYED if trained.get(k) != data.get(k)
    ]


def evaluate(checkpoint: str | Path, prepared: Prepared, out_dir: str | Path, split: str = "test", log=print) -> dict:
    """Evaluate on `split`; writes metrics.json, confusion.png and predictions.csv into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(checkpoint)
    _check_compatible(ckpt, prepared)
    if diffs := _differences(ckpt, prepared):
        log(
            "warning: the data was prepared differently from the training data (frames may look different, "
            "and 'test' may not be the actors held out in training): " + "; ".join(diffs)
        )
    model = model_from_checkpoint(ckpt)
    x, y = load_split(prepared, split)
    if len(x) == 0:
        raise ValueError(f"the {split!r} split of {prepared.path} is empty")
    result = predict(model, x, ckpt["stats"])
    probs = result["probs"].numpy()
    pred = probs.argmax(1)
    metrics = classification_metrics(y.numpy(), pred, list(ckpt["labels"]))
    metrics.update(
        {
            "split": split,
            "checkpoint": str(checkpoint),
            "data": str(prepared.path),
            "model": ckpt["config"]["model"]["name"],
        }
    )
    write_json(out / "metrics.json", metrics)
    plot_confusion(np.array(metrics["confusion_matrix"]), metrics["labels"], out / "confusion.png")
    _write_predictions(out / "predictions.csv", prepared, split, y.numpy(), probs, metrics["labels"])
    log(format_table(metrics))
    return metrics


def _write_predictions(path: Path, prepared: Prepared, split: str, y, probs, labels) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "true", "predicted", *[f"p_{lab}" for lab in labels]])
    items = [prepared.items[i] for i in prepared.indices(split)]
    for item, t, p in zip(items, y, probs, strict=True):
        writer.writerow([item["source"], labels[t], labels[int(p.argmax())], *[f"{v:.4f}" for v in p]])
    write_text(path, buf.getvalue())

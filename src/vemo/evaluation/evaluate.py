"""`vemo evaluate`: a checkpoint on a prepared split -> metrics.json, confusion matrix, predictions.

Label spaces may differ: a FER2013 model (7 classes) can be evaluated on CREMA-D (6) or on any folder
of clips. Classes are matched by name; data classes the model does not know are left out, model
classes the data does not have are removed from the model's output (the remaining probabilities are
renormalised), and both are reported, in the log and in metrics.json (`label_mapping`).
"""

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


def _check_size(ckpt: dict, prepared: Prepared) -> None:
    size = ckpt["config"]["prepare"]["size"]
    if prepared.manifest["settings"]["size"] != size:
        raise CheckpointError(
            f"the checkpoint expects {size}x{size} frames but the data was prepared at "
            f"{prepared.manifest['settings']['size']}; prepare again with prepare.size={size}"
        )


def label_mapping(model_labels: list[str], data_labels: list[str]) -> dict:
    """Classes both sides know (in the model's order), and what each side has that the other lacks."""
    shared = [lab for lab in model_labels if lab in data_labels]
    if not shared:
        raise CheckpointError(f"no class in common: model {model_labels} vs data {data_labels}")
    return {
        "evaluated": shared,
        "data_only": [lab for lab in data_labels if lab not in model_labels],
        "model_only": [lab for lab in model_labels if lab not in data_labels],
    }


def _differences(ckpt: dict, prepared: Prepared) -> list[str]:
    """Preprocessing or split settings in which the data differs from what the model was trained on."""
    trained, data = ckpt["config"]["prepare"], prepared.manifest["settings"]
    return [
        f"{k}: trained {trained.get(k)!r}, data {data.get(k)!r}" for k in PREPARE_KEYED if trained.get(k) != data.get(k)
    ]


def default_split(ckpt: dict, prepared: Prepared) -> str:
    """The held-out test split of the data the model was trained on; all of any other data."""
    trained, data = ckpt["config"]["prepare"], prepared.manifest["settings"]
    same = trained["dataset"] == data["dataset"] and Path(trained["root"]).resolve() == Path(data["root"]).resolve()
    return "test" if same else "all"


def evaluate(
    checkpoint: str | Path, prepared: Prepared, out_dir: str | Path, split: str | None = "test", log=print
) -> dict:
    """Evaluate on `split` (None: `default_split`); writes metrics.json, confusion.png, predictions.csv."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(checkpoint)
    _check_size(ckpt, prepared)
    split = split or default_split(ckpt, prepared)
    same_dataset = ckpt["config"]["prepare"]["dataset"] == prepared.manifest["settings"]["dataset"]
    if same_dataset and (diffs := _differences(ckpt, prepared)):
        log(
            "warning: the data was prepared differently from the training data (frames may look different, "
            "and 'test' may not be the actors held out in training): " + "; ".join(diffs)
        )
    model_labels, data_labels = list(ckpt["labels"]), list(prepared.labels)
    mapping = label_mapping(model_labels, data_labels)
    if mapping["data_only"] or mapping["model_only"]:
        log(
            f"labels matched by name: evaluating {', '.join(mapping['evaluated'])}; "
            f"left out (data only): {', '.join(mapping['data_only']) or 'none'}; "
            f"removed from the model's output (model only): {', '.join(mapping['model_only']) or 'none'}"
        )
    model = model_from_checkpoint(ckpt)
    x, y = load_split(prepared, split)
    if len(x) == 0:
        raise ValueError(f"the {split!r} split of {prepared.path} is empty")
    items = [prepared.items[i] for i in prepared.indices(split)]
    keep = np.array([data_labels[t] in mapping["evaluated"] for t in y.numpy()], dtype=bool)
    if not keep.all():
        log(f"{(~keep).sum()} of {len(keep)} clips have a class the model does not know; they are left out")
    x, y = x[keep], y.numpy()[keep]
    items = [it for it, k in zip(items, keep, strict=True) if k]
    labels = mapping["evaluated"]
    cols = [model_labels.index(lab) for lab in labels]
    result = predict(model, x, ckpt["stats"])
    probs = result["probs"].numpy()[:, cols]
    probs = probs / probs.sum(1, keepdims=True).clip(min=1e-12)
    truth = np.array([labels.index(data_labels[t]) for t in y], dtype=np.int64)
    metrics = classification_metrics(truth, probs.argmax(1), labels)
    metrics.update(
        {
            "split": split,
            "checkpoint": str(checkpoint),
            "data": str(prepared.path),
            "dataset": prepared.manifest["settings"]["dataset"],
            "root": prepared.manifest["settings"]["root"],
            "model": ckpt["config"]["model"]["name"],
            "label_mapping": mapping,
            "skipped": len(prepared.manifest["skipped"]),
        }
    )
    write_json(out / "metrics.json", metrics)
    plot_confusion(np.array(metrics["confusion_matrix"]), labels, out / "confusion.png")
    _write_predictions(out / "predictions.csv", items, truth, probs, labels)
    log(format_table(metrics))
    return metrics


def _write_predictions(path: Path, items: list[dict], y, probs, labels) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "true", "predicted", *[f"p_{lab}" for lab in labels]])
    for item, t, p in zip(items, y, probs, strict=True):
        writer.writerow([item["source"], labels[t], labels[int(p.argmax())], *[f"{v:.4f}" for v in p]])
    write_text(path, buf.getvalue())

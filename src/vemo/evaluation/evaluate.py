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
import torch

from vemo.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from vemo.config import MACHINE_PREPARE, keys_in_file
from vemo.data.loading.loader import load_split
from vemo.data.loading.prepare import KEYED_SETTINGS as PREPARE_KEYED
from vemo.data.loading.prepare import Prepared
from vemo.evaluation.calibration import expected_calibration_error, reliability
from vemo.evaluation.inference import check_frame_size, predict
from vemo.evaluation.metrics import classification_metrics, format_table
from vemo.evaluation.robustness import DEFAULT_LEVELS, perturb
from vemo.io import atomic_write, check_writable, folder_lock, tidy_on_failure, write_json, write_text
from vemo.reporting.plots import plot_confusion, plot_reliability, plot_robustness
from vemo.training.distributed import resolve_device


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


def _differences(ckpt: Checkpoint, prepared: Prepared) -> list[str]:
    """Preprocessing or split settings in which the data differs from what the model was trained on
    (settings added after a checkpoint or cache was made take their defaults on both sides)."""
    trained, data = ckpt.preprocessing, prepared.settings
    return [
        f"{k}: trained {getattr(trained, k)!r}, data {getattr(data, k)!r}"
        for k in PREPARE_KEYED
        if getattr(trained, k) != getattr(data, k)
    ]


# Datasets whose own files say which items are test (FER2013: its test/ folder, or Usage): any copy of one,
# wherever it lives, holds the same test split, so a model trained on the dataset is scored on that split only.
PRESCRIBED_SPLITS = ("fer2013",)


def default_split(ckpt: Checkpoint, prepared: Prepared) -> str:
    """The held-out test split of the data the model was trained on (for FER2013, of any copy whose
    splits FER2013 itself set: its Training images are never scored by default); all of any other data."""
    return "test" if _own_test_split(ckpt, prepared) or _same_data(ckpt, prepared) else "all"


def _own_test_split(ckpt: Checkpoint, prepared: Prepared) -> bool:
    """A copy of the model's dataset whose every split the dataset prescribed (a fer2013.csv without a
    Usage column is split by vemo instead: not one), holding a test split."""
    trained, data = ckpt.preprocessing, prepared.settings
    if trained.dataset != data.dataset or data.dataset not in PRESCRIBED_SPLITS:
        return False
    return all(it.get("prescribed") for it in prepared.items) and len(prepared.indices("test")) > 0


def _same_data(ckpt: Checkpoint, prepared: Prepared) -> bool:
    """The very data the model was trained on (same reader, same folder, same preprocessing and split)."""
    trained, data = ckpt.preprocessing, prepared.settings
    same_place = trained.dataset == data.dataset and Path(trained.root).resolve() == Path(data.root).resolve()
    return same_place and not _differences(ckpt, prepared)


def _predictions(
    ckpt: Checkpoint, model, prepared: Prepared, x, y, items, perturbation=None, progress: bool = False
) -> dict:
    """Probabilities over the classes both sides know, for the clips whose class the model knows."""
    model_labels, data_labels = list(ckpt.labels), list(prepared.labels)
    mapping = label_mapping(model_labels, data_labels)
    keep = np.array([data_labels[t] in mapping["evaluated"] for t in y.numpy()], dtype=bool)
    x, y = x[keep], y.numpy()[keep]
    if perturbation is not None:
        x = perturb(x, *perturbation)
    labels = mapping["evaluated"]
    cols = [model_labels.index(lab) for lab in labels]
    result = predict(model, x, ckpt.stats, temperature=ckpt.temperature, progress=progress)
    probs = result["probs"].numpy()[:, cols]
    probs = probs / probs.sum(1, keepdims=True).clip(min=1e-12)
    raw = torch.softmax(result["logits"][:, cols], dim=1).numpy()  # temperature 1, for the calibration figures
    return {
        "probs_uncalibrated": raw,
        "mapping": mapping,
        "dropped": int((~keep).sum()),
        "items": [it for it, k in zip(items, keep, strict=True) if k],
        "truth": np.array([labels.index(data_labels[t]) for t in y], dtype=np.int64),
        "probs": probs,
        "labels": labels,
        "embedding": result["embedding"].numpy(),
        "attention": result["attention"].numpy() if "attention" in result else None,
        "x": x,
    }


def _choose_split(ckpt: Checkpoint, prepared: Prepared, split: str | None, log) -> str:
    if split is None:
        split = default_split(ckpt, prepared)
        why = "the model's own dataset: its held-out test split" if split == "test" else "other data: all of it"
        if split == "test" and not _same_data(ckpt, prepared):
            why = f"{prepared.settings.dataset}'s own test split, as for the data the model was trained on"
        log(f"evaluating split '{split}' ({why}; --split to choose)")
    return split


def output_folder(base: Path, ckpt: Checkpoint, prepared: Prepared, split: str) -> Path:
    """`base` (the run's folder) for the run's own test split; `base/eval-<cache>-<split>` for any other
    data or split, so evaluating a checkpoint elsewhere never overwrites the run's own results."""
    if split == "test" and _same_data(ckpt, prepared):
        return base
    return base / f"eval-{prepared.path.name}-{split}"


def _load(checkpoint, prepared: Prepared, split: str | None, log, device: str = "cpu"):
    device_ = resolve_device(device)  # before any work: asking for a missing GPU is an error
    ckpt = load_checkpoint(checkpoint)
    check_frame_size(ckpt, prepared)
    split = _choose_split(ckpt, prepared, split, log)
    if len(prepared.indices(split)) == 0:
        held = ", ".join(f"{name} {sum(n.values())}" for name, n in prepared.counts.items() if sum(n.values()))
        raise ValueError(f"the {split!r} split of {prepared.path} is empty (it holds: {held}); choose one with --split")
    x, y = load_split(prepared, split)
    items = [prepared.items[i] for i in prepared.indices(split)]
    return ckpt, ckpt.build_model().to(device_), split, x, y, items


def evaluate(
    checkpoint: str | Path,
    prepared: Prepared,
    out_dir: str | Path,
    split: str | None = "test",
    log=print,
    device: str = "cpu",
    progress: bool = False,
) -> dict:
    """Evaluate on `split` (None: `default_split`); writes metrics.json, confusion.png, predictions.csv and
    embeddings.npz (clip embeddings, labels, attention weights and a few frames, for the report's figures).
    `progress`: a bar over the inference."""
    out = check_writable(out_dir)  # before any inference: a long evaluation never ends in a failed write
    ckpt, model, split, x, y, items = _load(checkpoint, prepared, split, log, device)
    same_dataset = ckpt.preprocessing.dataset == prepared.settings.dataset
    if same_dataset and (diffs := _differences(ckpt, prepared)):
        log(
            "warning: the data was prepared differently from the training data (frames may look different, "
            "and 'test' may not be the actors held out in training): " + "; ".join(diffs)
        )
    p = _predictions(ckpt, model, prepared, x, y, items, progress=progress)
    _log_label_mapping(p, len(items), log)
    metrics = _metrics(p, ckpt, prepared, checkpoint, split)
    write_json(out / "metrics.json", metrics)
    _write_figures(out, metrics, p["labels"], split, len(p["truth"]))
    _write_predictions(out / "predictions.csv", p["items"], p["truth"], p["probs"], p["labels"])
    _write_embeddings(out / "embeddings.npz", p)
    log(format_table(metrics))
    cal = metrics["calibration"]
    t, before, after = cal["temperature"], cal["ece_uncalibrated"], cal["ece"]
    log(f"calibration: temperature {t:.3f}; ECE {before:.4f} at temperature 1, {after:.4f} at {t:.3f}")
    return metrics


def _log_label_mapping(p: dict, n_clips: int, log) -> None:
    """Say which classes were matched by name and how many clips had a class the model lacks."""
    mapping = p["mapping"]
    if mapping["data_only"] or mapping["model_only"]:
        log(
            f"labels matched by name: evaluating {', '.join(mapping['evaluated'])}; "
            f"left out (data only): {', '.join(mapping['data_only']) or 'none'}; "
            f"removed from the model's output (model only): {', '.join(mapping['model_only']) or 'none'}"
        )
    if p["dropped"]:
        log(f"{p['dropped']} of {n_clips} clips have a class the model does not know; they are left out")


def _metrics(p: dict, ckpt: Checkpoint, prepared: Prepared, checkpoint: str | Path, split: str) -> dict:
    """metrics.json: accuracy, per-class precision/recall/F1 and the confusion matrix, what was scored
    (checkpoint, data, split, label mapping) and calibration (ECE and reliability at T and at 1)."""
    metrics = classification_metrics(p["truth"], p["probs"].argmax(1), p["labels"])
    metrics.update(
        {
            "split": split,
            "checkpoint": str(checkpoint),
            "data": str(prepared.path),
            "dataset": prepared.settings.dataset,
            "root": prepared.settings.root,
            "model": ckpt.model_name,
            "label_mapping": p["mapping"],
            "skipped": len(prepared.skipped),
            "calibration": {
                "temperature": ckpt.temperature,
                "ece": expected_calibration_error(p["probs"], p["truth"]),
                "ece_uncalibrated": expected_calibration_error(p["probs_uncalibrated"], p["truth"]),
                "reliability": reliability(p["probs"], p["truth"]),
                "reliability_uncalibrated": reliability(p["probs_uncalibrated"], p["truth"]),
            },
        }
    )
    return metrics


def _write_figures(out: Path, metrics: dict, labels: list[str], split: str, n_clips: int) -> None:
    """confusion.png and reliability.png (calibrated against temperature 1)."""
    plot_confusion(np.array(metrics["confusion_matrix"]), labels, out / "confusion.png")
    cal = metrics["calibration"]
    plot_reliability(
        {
            f"temperature 1 (ECE {cal['ece_uncalibrated']:.3f})": cal["reliability_uncalibrated"],
            f"temperature {cal['temperature']:.2f} (ECE {cal['ece']:.3f})": cal["reliability"],
        },
        out / "reliability.png",
        f"calibration on {split} ({n_clips} clips)",
    )


def _write_embeddings(path: Path, p: dict, gallery: int = 12) -> None:
    """Embeddings and predictions of every clip, plus frames of a few clips for the report's figures:
    the middle frame of up to `gallery` misclassified clips and all frames of one clip per class (the
    first of each: clips are stored by class, so the first few clips would all share one)."""
    pred = p["probs"].argmax(1)
    wrong = np.flatnonzero(pred != p["truth"])[:gallery]
    strip_idx = np.sort(np.unique(np.asarray(p["truth"]), return_index=True)[1])
    x = p["x"].numpy()
    arrays = {
        "embedding": p["embedding"],
        "truth": p["truth"],
        "pred": pred,
        "labels": np.array(p["labels"]),
        "wrong_index": wrong,
        "wrong_frames": x[wrong, x.shape[1] // 2] if len(wrong) else np.zeros((0, *x.shape[2:]), np.uint8),
        "strip_index": strip_idx,
        "strip_frames": x[strip_idx],
    }
    if p["attention"] is not None:
        arrays["attention"] = p["attention"]
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def robustness(
    checkpoint: str | Path,
    prepared: Prepared,
    out_dir: str | Path,
    split: str | None = "test",
    kinds: dict[str, list[float]] | None = None,
    log=print,
    device: str = "cpu",
) -> list[dict]:
    """Accuracy and macro-F1 per perturbation and level ({kind: levels}; default: every kind at its
    default levels); writes robustness.json and robustness.png."""
    ckpt, model, split, x, y, items = _load(checkpoint, prepared, split, log, device)
    rows, clean = [], None
    for kind, levels in (kinds or DEFAULT_LEVELS).items():
        for level in levels:
            if level == 0 and clean is not None:  # level 0 is the clean input for every kind: score it once
                m = clean
            else:
                p = _predictions(ckpt, model, prepared, x, y, items, (kind, level))
                m = classification_metrics(p["truth"], p["probs"].argmax(1), p["labels"])
                clean = m if level == 0 else clean
            rows.append({"kind": kind, "level": level, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
            log(f"{kind} {level:g}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
    out = Path(out_dir)
    write_json(out / "robustness.json", {"split": split, "checkpoint": str(checkpoint), "rows": rows})
    plot_robustness({ckpt.model_name: rows}, out / "robustness.png")
    return rows


def _write_predictions(path: Path, items: list[dict], y, probs, labels) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "true", "predicted", *[f"p_{lab}" for lab in labels]])
    for item, t, p in zip(items, y, probs, strict=True):
        writer.writerow([item["source"], labels[t], labels[int(p.argmax())], *[f"{v:.4f}" for v in p]])
    write_text(path, buf.getvalue())


def user_data_choice(flags: list[str], overrides: list[str], config_path: str | None) -> tuple[bool, tuple[str, ...]]:
    """What the user chose over the checkpoint's own data settings, from the `section.key` names given as
    command-line flags (--dataset, --root), as `--set KEY=VALUE` overrides and in a --config file.

    Returns (dataset_given, honour): where the data lives (prepare.dataset/prepare.root) counts wherever it
    was given; other prepare keys only when set with --set (e.g. prepare.target=face-vote), since a config
    file's frames or size describe some training run, not this checkpoint; machine-only keys never count."""
    named = [o.split("=", 1)[0] for o in overrides]
    location = {"prepare.root", "prepare.dataset"}
    given = bool(location & ({*flags, *named} | keys_in_file(config_path)))
    honour = tuple(
        k.removeprefix("prepare.")
        for k in named
        if k.startswith("prepare.") and k not in location and k.removeprefix("prepare.") not in MACHINE_PREPARE
    )
    return given, honour


def evaluate_command(
    cfg,
    checkpoint: str,
    data: str | None,
    out: str | None,
    split: str | None,
    dataset_given: bool,
    perturb: list[str] | None = None,
    levels: list[float] | None = None,
    progress: bool = True,
    log=print,
    honour: tuple[str, ...] = (),
    device: str = "cpu",
) -> dict:
    """`vemo evaluate`: prepare the data the way the checkpoint expects, evaluate, optionally perturb.

    The checkpoint's own preprocessing and split settings are used (`Checkpoint.apply_preprocessing`), so
    frames match what the model saw and "test" means the groups it was kept away from; only where the
    data lives (and which reader) comes from the caller: `dataset_given` (--dataset/--root, or
    prepare.dataset/prepare.root in --config or --set) keeps cfg's dataset and root, and the keys in
    `honour` (--set prepare.KEY=VALUE) keep cfg's value. Otherwise the checkpoint's own dataset is used.
    Results go to --out, else to the checkpoint's folder for its own test split and to a folder of
    their own inside it for other data (`output_folder`); the folder is checked to be writable before
    anything is computed, and locked while it is written.
    """
    from vemo.checkpoint import SHIPPED
    from vemo.data.loading.prepare import load_prepared, prepare

    resolve_device(device)  # a GPU asked for but missing is refused before anything is prepared
    if perturb and levels and len(perturb) > 1:
        raise ValueError("--levels applies to one --perturb kind at a time (their units differ)")
    ckpt = load_checkpoint(checkpoint)
    ckpt.build_model()  # weights that do not fit their architecture: refused now, not after preparing the data
    base = Path(out or (Path("runs/evaluate") if str(checkpoint) in SHIPPED else Path(checkpoint).parent))
    with tidy_on_failure(base):  # refused late (unusable data, say): no empty output folder left behind
        check_writable(base)
        if data:
            prepared = load_prepared(data)
        else:
            keep = (*honour, *(("dataset", "root") if dataset_given else ()))
            for key in honour:  # prepare keys the user set with --set: theirs, not the checkpoint's
                trained = getattr(ckpt.preprocessing, key, None)
                log(f"prepare.{key}={getattr(cfg.prepare, key)!r} as given (the model was trained with {trained!r})")
            ckpt.apply_preprocessing(cfg, keep)
            prepared = prepare(cfg.prepare, progress=progress, log=log)
        split = _choose_split(ckpt, prepared, split, log)
        out_dir = base if out else output_folder(base, ckpt, prepared, split)
        if out_dir != base:
            log(f"not the run's own test split: writing to {out_dir} (the run's own results stay as they are)")
        with folder_lock(out_dir, "vemo evaluate", log=log):
            metrics = evaluate(checkpoint, prepared, out_dir, split=split, log=log, device=device, progress=progress)
            log(f"metrics: {out_dir / 'metrics.json'}")
            if perturb:
                kinds = {k: (levels or DEFAULT_LEVELS[k]) for k in perturb}
                robustness(checkpoint, prepared, out_dir, metrics["split"], kinds, log=log, device=device)
                log(f"robustness: {out_dir / 'robustness.json'}")
    return metrics

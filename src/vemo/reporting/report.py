"""The run report: `report.md`, built only from the files a run wrote (never from typed-in numbers)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from vemo.io import write_text


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _data_section(data: dict) -> list[str]:
    if not data:
        return []
    counts = data.get("counts", {})
    lines = [
        "## Data",
        "",
        f"- dataset `{data.get('dataset')}` from `{data.get('root')}`; cache `{data.get('cache')}`",
        f"- {data.get('summary', '')}; face detected in {data.get('face_detected')} of {data.get('n')} clips "
        "(the rest: centre-crop fallback)",
        f"- split by actor (no actor in two splits), seed {data.get('seed')}: "
        + ", ".join(
            f"{s} {sum(c.values())} clips / {data.get('groups', {}).get(s, '?')} actors" for s, c in counts.items()
        ),
        f"- {data.get('frames')} frames per clip sampled uniformly, {data.get('size')}x{data.get('size')} grayscale",
        "",
    ]
    return lines


def _training_section(run: Path, cfg: dict, history: list[dict], train: dict) -> list[str]:
    joint = [r for r in history if r["stage"] == "joint"]
    pre = [r for r in history if r["stage"] == "pretrain"]
    m, t = cfg.get("model", {}), cfg.get("train", {})
    lines = [
        "## Model and training",
        "",
        f"- model `{m.get('name')}`: encoder `{m.get('encoder')}` (width {m.get('width')}, features "
        f"{m.get('feature_dim')}), autoencoder code {m.get('bottleneck_dim')}, LSTM hidden {m.get('hidden')}; "
        f"{train.get('parameters', 0) / 1e6:.2f}M parameters",
        f"- {len(pre)} frame pretraining epochs (frame classifier, plus reconstruction for autoencoder "
        f"variants), then {len(joint)} joint epochs (max {t.get('epochs')}, "
        f"patience {t.get('patience')}); best validation accuracy {float(train.get('best_val_acc', 0)):.3f} "
        f"at epoch {train.get('best_epoch')}; {float(train.get('seconds', 0)) / 60:.1f} min training",
        f"- AdamW lr {t.get('lr')} one-cycle, batch {t.get('batch_size')}, label smoothing "
        f"{t.get('label_smoothing')}, input noise std {t.get('noise_std')}, reconstruction weight "
        f"{t.get('recon_weight')}, seed {t.get('seed')}",
        "",
    ]
    if (run / "curves.png").exists():
        lines += ["![training curves](curves.png)", ""]
    return lines


def _results_section(metrics: dict) -> list[str]:
    if not metrics:
        return ["## Results", "", "No `metrics.json` in this run: run `vemo evaluate` first.", ""]
    lines = [
        "## Test results",
        "",
        f"**Accuracy {metrics['accuracy']:.3f}**, macro-F1 {metrics['macro_f1']:.3f}, weighted F1 "
        f"{metrics['weighted_f1']:.3f} on {metrics['n']} {metrics.get('split', 'test')} clips "
        f"(chance: {1 / len(metrics['labels']):.3f}).",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for lab, c in metrics["per_class"].items():
        lines.append(f"| {lab} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    lines += ["", "![confusion matrix](confusion.png)", ""]
    return lines


def _provenance_section(env: dict) -> list[str]:
    if not env:
        return []
    return [
        "## How this run was made",
        "",
        f"- command: `{env.get('command')}`",
        f"- vemo {env.get('vemo')} (git {str(env.get('git_commit'))[:10]}), torch {env.get('torch')}, "
        f"python {env.get('python')}",
        f"- machine: {env.get('platform')}, {env.get('cpu_count')} CPUs, {env.get('torch_threads')} torch threads",
        f"- data manifest sha256 `{str(env.get('data_manifest_sha256'))[:16]}`",
        "",
    ]


def write_report(run_dir: str | Path) -> Path:
    """Write `report.md` into a run folder from its config, history, data summary and metrics."""
    run = Path(run_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    data = _read_json(run / "data.json")
    title = "vemo run report" + (" (synthetic data)" if data.get("synthetic") else "")
    lines = [f"# {title}", "", f"Run folder `{run}`. Every number below is read from the files in it.", ""]
    lines += _data_section(data)
    lines += _training_section(run, cfg, _history(run / "history.csv"), _read_json(run / "train.json"))
    lines += _results_section(_read_json(run / "metrics.json"))
    lines += _provenance_section(_read_json(run / "environment.json"))
    if data.get("synthetic"):
        lines += [
            "## Caveat",
            "",
            "These clips are vemo's procedurally rendered faces, not people: the numbers show that the "
            "pipeline learns, not how well it recognises human emotions.",
            "",
        ]
    path = run / "report.md"
    write_text(path, "\n".join(lines))
    return path

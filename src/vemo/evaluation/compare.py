"""`vemo compare`: variants trained on the same prepared data and split, several seeds each, side by side.

For each (variant, seed): train, evaluate on the test split, time inference, measure robustness to
noise/blur/occlusion. Then per variant: mean +- std over seeds, and a paired comparison of the
autoencoder model against the plain CNN-LSTM (same seeds, same data: the difference per seed isolates
the autoencoder). With 3 seeds no test can be very sure; the paired t-test and the exact sign-flip
test are reported so a reader sees how sure.

Finished runs are reused (their metrics.json exists), so an interrupted compare continues.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

import numpy as np

from vemo.config import Config
from vemo.data.loader import load_split
from vemo.data.prepare import Prepared
from vemo.evaluation.calibration import calibrate_checkpoint
from vemo.evaluation.evaluate import evaluate, robustness
from vemo.evaluation.inference import predict
from vemo.evaluation.robustness import DEFAULT_LEVELS
from vemo.io import write_json, write_text
from vemo.reporting.plots import plot_compare, plot_robustness
from vemo.training.checkpoint import load_checkpoint, model_from_checkpoint
from vemo.training.trainer import train

# The pair whose difference is the ablation; cnn_ae_lstm_attn and c3d on request (--models): 3 seeds of
# each of four variants take ~40 min on 2 cores, twice the budget of a default run.
DEFAULT_VARIANTS = ["cnn_lstm", "cnn_ae_lstm"]
PAIR = ("cnn_ae_lstm", "cnn_lstm")
# Every other level of `vemo evaluate --perturb`'s defaults (clean, middle, strongest): the curves keep
# their shape at half the cost; robustness was ~30 s of each run's ~3 minutes with all five levels.
ROBUSTNESS_LEVELS = {kind: levels[::2] for kind, levels in DEFAULT_LEVELS.items()}


def inference_speed(checkpoint: Path, prepared: Prepared, repeats: int = 3) -> float:
    """Test clips per second through the model alone (best of `repeats`)."""
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    x, _ = load_split(prepared, "test")
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, x, ckpt["stats"])
        best = max(best, len(x) / (time.perf_counter() - start))
    return best


def run_one(cfg: Config, prepared: Prepared, run_dir: Path, log) -> dict:
    """Train + evaluate + time + robustness for one (variant, seed), or read it back if already done."""
    done = run_dir / "run.json"
    if done.exists():
        log(f"reusing {run_dir}")
        return json.loads(done.read_text())
    quiet = lambda *_: None  # noqa: E731
    result = train(cfg, prepared, run_dir, progress=False, log=quiet, resume=True)
    calibrate_checkpoint(result.best_checkpoint, prepared, "val", log=quiet)  # as `vemo train` does
    metrics = evaluate(result.best_checkpoint, prepared, run_dir, split="test", log=quiet)
    rob = robustness(result.best_checkpoint, prepared, run_dir, "test", ROBUSTNESS_LEVELS, log=quiet)
    row = {
        "model": cfg.model.name,
        "seed": cfg.train.seed,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "parameters": result.parameters,
        "train_minutes": result.seconds / 60,
        "best_epoch": result.best_epoch,
        "clips_per_s": inference_speed(result.best_checkpoint, prepared),
        "robustness": rob,
        "run_dir": str(run_dir),
    }
    write_json(done, row)
    log(
        f"{cfg.model.name} seed {cfg.train.seed}: accuracy {row['accuracy']:.3f}, macro-F1 {row['macro_f1']:.3f} "
        f"({row['train_minutes']:.1f} min)"
    )
    return row


def summarize(runs: list[dict], variants: list[str]) -> list[dict]:
    out = []
    for name in variants:
        mine = [r for r in runs if r["model"] == name]
        s = {"model": name, "seeds": [r["seed"] for r in mine], "parameters": mine[0]["parameters"]}
        for key in ("accuracy", "macro_f1", "train_minutes", "clips_per_s"):
            v = np.array([r[key] for r in mine], dtype=float)
            s[f"{key}_mean"], s[f"{key}_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out.append(s)
    return out


def paired(runs: list[dict], a: str, b: str) -> dict | None:
    """Per-seed differences a - b in accuracy and macro-F1, a paired t-test and an exact sign-flip test."""
    from scipy import stats

    by = {(r["model"], r["seed"]): r for r in runs}
    seeds = sorted(s for (m, s) in by if m == a and (b, s) in by)
    if len(seeds) < 2:
        return None
    out = {"a": a, "b": b, "seeds": seeds}
    for key in ("accuracy", "macro_f1"):
        d = np.array([by[(a, s)][key] - by[(b, s)][key] for s in seeds])
        flips = [np.mean(d * np.array(sign)) for sign in itertools.product((1, -1), repeat=len(d))]
        p_flip = float(np.mean([abs(f) >= abs(d.mean()) - 1e-12 for f in flips]))
        t = stats.ttest_rel([by[(a, s)][key] for s in seeds], [by[(b, s)][key] for s in seeds])
        out[key] = {
            "differences": d.tolist(),
            "mean": float(d.mean()),
            "std": float(d.std(ddof=1)),
            "t": float(t.statistic) if np.isfinite(t.statistic) else None,
            "p_t": float(t.pvalue) if np.isfinite(t.pvalue) else None,
            "p_sign_flip": p_flip,
            "min_p_sign_flip": 2 / 2 ** len(d),
        }
    return out


def robustness_means(runs: list[dict], variants: list[str]) -> dict[str, list[dict]]:
    """Per variant, accuracy and macro-F1 per (kind, level) averaged over seeds (accuracy with its std)."""
    curves = {}
    for name in variants:
        rows = [r["robustness"] for r in runs if r["model"] == name]
        merged = []
        for k, first in enumerate(rows[0]):
            acc = np.array([rs[k]["accuracy"] for rs in rows])
            merged.append(
                {
                    "kind": first["kind"],
                    "level": first["level"],
                    "accuracy": float(acc.mean()),
                    "macro_f1": float(np.mean([rs[k]["macro_f1"] for rs in rows])),
                    "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                }
            )
        curves[name] = merged
    return curves


def compare(
    cfg: Config,
    prepared: Prepared,
    out_dir: str | Path,
    variants: list[str] | None = None,
    seeds: list[int] | None = None,
    log=print,
) -> dict:
    variants = variants or DEFAULT_VARIANTS
    seeds = seeds if seeds is not None else [0, 1, 2]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    runs = []
    for name in variants:
        for seed in seeds:
            run_cfg = copy.deepcopy(cfg)
            run_cfg.model.name, run_cfg.train.seed = name, seed
            runs.append(run_one(run_cfg, prepared, out / f"{name}-seed{seed}", log))
    result = {
        "data": str(prepared.path),
        "dataset": prepared.manifest["settings"]["dataset"],
        "test_clips": int(len(prepared.indices("test"))),
        "split_seed": prepared.manifest["settings"]["seed"],
        "seeds": seeds,
        "summary": summarize(runs, variants),
        "paired": paired(runs, *PAIR) if all(v in variants for v in PAIR) else None,
        "robustness": robustness_means(runs, variants),
        "runs": runs,
        "minutes": (time.time() - started) / 60,
    }
    write_json(out / "compare.json", result)
    plot_compare(result["summary"], out / "compare.png")
    plot_robustness(result["robustness"], out / "robustness.png")
    write_text(out / "compare.md", compare_markdown(result))
    log(compare_markdown(result))
    return result


def compare_markdown(result: dict) -> str:
    lines = [
        f"Test split of {result['dataset']} ({result['test_clips']} clips, split seed {result['split_seed']}); "
        f"training seeds {', '.join(map(str, result['seeds']))}; mean +- std over seeds.",
        "",
        "| model | accuracy | macro-F1 | parameters | train min | inference clips/s |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['model']} | {s['accuracy_mean']:.3f} +- {s['accuracy_std']:.3f} | "
            f"{s['macro_f1_mean']:.3f} +- {s['macro_f1_std']:.3f} | {s['parameters']:,} | "
            f"{s['train_minutes_mean']:.1f} | {s['clips_per_s_mean']:,.0f} |"
        )
    p = result.get("paired")
    if p:
        a, f = p["accuracy"], p["macro_f1"]
        lines += [
            "",
            f"Paired, {p['a']} minus {p['b']} (same seeds): accuracy {a['mean']:+.3f} +- {a['std']:.3f} "
            f"(per seed {', '.join(f'{d:+.3f}' for d in a['differences'])}; paired t-test p = {_p(a['p_t'])}, "
            f"sign-flip p = {a['p_sign_flip']:.2f}, the smallest possible with {len(p['seeds'])} seeds being "
            f"{a['min_p_sign_flip']:.2f}); macro-F1 {f['mean']:+.3f} +- {f['std']:.3f} (p = {_p(f['p_t'])}).",
        ]
    return "\n".join(lines) + "\n"


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"

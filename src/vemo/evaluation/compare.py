"""Statistics of `vemo compare` (pure evaluation: no training, no files): per variant the mean +- std
over seeds, a paired comparison of the autoencoder model against the plain CNN-LSTM (same seeds, same
data: the difference per seed isolates the autoencoder), robustness curves averaged over seeds, and the
markdown table. With 3 seeds no test can be very sure; the paired t-test and the exact sign-flip test
are reported so a reader sees how sure.

The experiment that produces the runs (prepare, train each variant and seed, evaluate) is the driver
`vemo.experiments`.
"""

from __future__ import annotations

import itertools

import numpy as np

# The pair whose difference is the ablation: (a, b) in "a minus b".
PAIR = ("cnn_ae_lstm", "cnn_lstm")


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


def comparison(runs: list[dict], variants: list[str], seeds: list[int], data: dict) -> dict:
    """compare.json's content from the runs (one row per variant and seed: accuracy, macro_f1,
    parameters, train_minutes, clips_per_s, robustness) and `data` (what they were tested on: dataset,
    test_clips, split_seed, ...): per-variant summary, the paired test of PAIR, robustness means."""
    return {
        **data,
        "seeds": seeds,
        "summary": summarize(runs, variants),
        "paired": paired(runs, *PAIR) if all(v in variants for v in PAIR) else None,
        "robustness": robustness_means(runs, variants),
        "runs": runs,
    }


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

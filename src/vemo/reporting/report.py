"""`vemo report RUN_DIR`: report.md, a self-contained report.html and (with Chromium) report.pdf.

Built only from the files a run wrote (config.yaml, data.json, train.json, history.csv, metrics.json,
embeddings.npz, environment.json, and a compare folder's compare.json when there is one): no number
in it is typed in. Figures the run did not draw itself (t-SNE/PCA, frame strips, misclassified
gallery) are drawn here from embeddings.npz.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from vemo.config import upgrade_saved
from vemo.io import atomic_write, write_text
from vemo.reporting.document import Block, print_pdf, to_html, to_markdown
from vemo.reporting.plots import plot_embeddings, plot_frame_strips, plot_gallery


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _parts(cfg: dict) -> tuple[bool, bool, bool]:
    """(frame encoder, autoencoder, attention) of the run's model, asked of the model the config builds
    (through the model interface) rather than guessed from its name."""
    from vemo.config import config_from_dict
    from vemo.models.registry import model_from_config

    c = config_from_dict({k: v for k, v in cfg.items() if k in ("model", "prepare")})
    model = model_from_config(c.model, 2, c.prepare.size)
    attention = model.has_frame_encoder and getattr(model.temporal, "attention", None) is not None
    return model.has_frame_encoder, model.has_autoencoder, attention


def _face_finder(p: dict) -> str:
    """How the run's faces were found, from its prepare settings (config.yaml holds the cache's own)."""
    if p.get("face") == "haar":
        return (
            f"found by OpenCV's Haar cascade on {p.get('detect_frames')} frames and interpolated "
            "(centre crop where none is found)"
        )
    return f"cropped from the frame's centre (`prepare.face` {p.get('face')}: no face detection)"


def _design(cfg: dict, data: dict) -> Block:
    m, p = cfg.get("model", {}), cfg.get("prepare", {})
    frame_model, autoencoder, attention = _parts(cfg)
    finder = _face_finder(p)
    side = data.get("size", p.get("size"))  # the cache's own (data.json), else the run's config
    size = f"{side}x{side} grayscale: colour carries little about expression and costs 3x"
    if data.get("kind") == "stills":
        first = (
            f"Frames: each face image becomes {p.get('frames')} frames of simulated head and camera motion "
            f"(a smooth path of small shifts, rotations, zoom and brightness; fresh in training, fixed per "
            f"image in evaluation), {size}."
        )
    else:
        first = (
            f"Frames: {p.get('frames')} per clip, sampled uniformly (an expression's onset, apex and offset all "
            f"appear), face {finder}, {size}."
        )
    items = [first]
    if not frame_model:
        items.append(
            "3D CNN: convolves space and time together, so motion is seen directly; no per-frame "
            "features to pretrain, which makes it the non-recurrent baseline."
        )
    else:
        items.append(
            f"Frame encoder `{m.get('encoder')}` (CNN, width {m.get('width')}): pretrained on single "
            "frames first, because one clip costs T encoder passes but carries a single label."
        )
        if autoencoder:
            items.append(
                f"Autoencoder bottleneck ({m.get('feature_dim')} -> {m.get('bottleneck_dim')}): trained "
                "to rebuild the clean frame from a noisy one, so the code keeps the face and drops noise."
            )
        items.append(
            f"LSTM (hidden {m.get('hidden')}) over the frame codes: expressions unfold in time"
            + ("; soft attention weights the frames that matter most." if attention else ".")
        )
    if data.get("dataset") == "crema-d":
        items.append("Actor-independent split: no person is in two splits, so the score is for unseen people.")
    elif data.get("kind") != "stills":
        items.append("Group-independent split: clips of one actor (when the names tell) stay in one split.")
    return Block("ul", items)


def _data(data: dict, cfg: dict) -> list[Block]:
    if not data:
        return []
    counts = data.get("counts", {})
    splits = ", ".join(
        f"{s} {sum(c.values())} clips / {data.get('groups', {}).get(s, '?')} groups" for s, c in counts.items()
    )
    p = cfg.get("prepare", {})
    protocol = f"k-fold, fold {p.get('fold')} of {p.get('folds')}" if p.get("folds") else f"seed {data.get('seed')}"
    faces = (
        "face images used as they are"
        if data.get("kind") == "stills"
        else f"face detected in {data.get('face_detected')} of {data.get('n')} clips (others: centre crop)"
    )
    items = [
        f"`{data.get('dataset')}` from `{data.get('root')}`: {data.get('summary', '')}; {faces}.",
        f"Split ({protocol}): {splits}.",
    ]
    return [Block("h2", "Data and split"), Block("ul", items)]


def _training(run: Path, cfg: dict, history: list[dict], train: dict) -> list[Block]:
    """The training section, from train.json (the summary the trainer wrote: best epoch, epochs run,
    why it stopped, time); history.csv only counts epochs when there is no train.json."""
    m, t = cfg.get("model", {}), cfg.get("train", {})
    limits = f"max {t.get('epochs')}, early-stopping patience {t.get('patience')}"
    if train:
        pre = train.get("pretrain_epochs_run", sum(r["stage"] == "pretrain" for r in history))
        stopped = {
            "early stopping": f"stopped early after {t.get('patience')} epochs without validation improvement",
            "time budget": f"stopped by the time budget (train.max_minutes {t.get('max_minutes')})",
            "all epochs": "all epochs run",
        }.get(train.get("stopped"))
        first = (
            f"`{m.get('name')}`, {train.get('parameters', 0) / 1e6:.2f}M parameters; {pre} frame-pretraining "
            f"epochs, then {train.get('epochs_run')} joint epochs ({limits}"
            + (f"; {stopped}" if stopped else "")
            + f"); best validation accuracy {float(train.get('best_val_acc', 0)):.3f} at epoch "
            f"{train.get('best_epoch')}; {float(train.get('seconds', 0)) / 60:.1f} min."
        )
    else:
        counts = {stage: sum(r["stage"] == stage for r in history) for stage in ("pretrain", "joint")}
        first = (
            f"`{m.get('name')}`: no `train.json` in this run folder (training did not finish); `history.csv` "
            f"holds {counts['pretrain']} frame-pretraining and {counts['joint']} joint epochs ({limits})."
        )
    items = [
        first,
        f"AdamW, joint lr {t.get('lr')} one-cycle, batch {t.get('batch_size')}, weight decay {t.get('weight_decay')}, "
        f"label smoothing {t.get('label_smoothing')}, input noise std {t.get('noise_std')}, reconstruction "
        f"weight {t.get('recon_weight')}, augmentation {'on' if t.get('augment') else 'off'}, seed {t.get('seed')}.",
    ]
    if any(r["stage"] == "pretrain" for r in history) or train.get("pretrain_epochs_run"):
        frozen = "frozen in" if t.get("freeze_encoder") else "fine-tuned in"
        items.append(
            f"Frame pretraining: {t.get('pretrain_optimizer', 'adamw')}, lr {t.get('pretrain_lr')} "
            f"{t.get('pretrain_schedule', 'constant')}, "
            f"{t.get('pretrain_frames')} frames per clip per step; the frame CNN is then {frozen} the joint stage."
        )
    blocks = [Block("h2", "Training"), Block("ul", items)]
    if (run / "curves.png").exists():
        blocks.append(Block("img", [("curves.png", "training curves")]))
        if train.get("loss"):
            blocks.append(Block("p", f"Loss in the curves, train and validation alike: {train['loss']}."))
    return blocks


def _results(metrics: dict) -> list[Block]:
    if not metrics:
        return [Block("h2", "Results"), Block("p", "No `metrics.json` in this run: run `vemo evaluate` first.")]
    rows = [
        [lab, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
        for lab, c in metrics["per_class"].items()
    ]
    head = (
        f"**Accuracy {metrics['accuracy']:.3f}**, macro-F1 {metrics['macro_f1']:.3f}, weighted F1 "
        f"{metrics['weighted_f1']:.3f} on {metrics['n']} {metrics.get('split', 'test')} clips "
        f"(chance {1 / len(metrics['labels']):.3f})."
    )
    blocks = [
        Block("h2", f"Results ({metrics.get('split', 'test')} split)"),
        Block("p", head),
        Block("table", (["class", "precision", "recall", "F1", "support"], rows)),
        Block("img", [("confusion.png", "confusion matrix: counts and row-normalised")]),
    ]
    cal = metrics.get("calibration")
    if cal:
        blocks.append(
            Block(
                "p",
                f"Calibration: softmax temperature {cal['temperature']:.2f}, fitted on the validation split; "
                f"expected calibration error on this split {cal['ece_uncalibrated']:.3f} at temperature 1, "
                f"{cal['ece']:.3f} with it."
                + (
                    " Here the temperature made it worse: it minimises the validation split's log-loss, which need"
                    " not lower this split's ECE (a small validation split, e.g. of few actors, makes that likelier)."
                    if cal["ece"] > cal["ece_uncalibrated"]
                    else ""
                ),
            )
        )
        blocks.append(Block("img", [("reliability.png", "reliability diagram: accuracy against confidence")]))
    return blocks


def _figures(run: Path) -> list[Block]:
    """t-SNE/PCA, frame strips (with attention where the model has it) and misclassified clips, drawn
    from embeddings.npz."""
    path = run / "embeddings.npz"
    if not path.exists():
        return []
    z = np.load(path)
    labels = [str(s) for s in z["labels"]]
    figs = []
    if len(z["embedding"]) >= 3:
        plot_embeddings(z["embedding"], z["truth"], labels, run / "embeddings.png")
        figs.append(("embeddings.png", "PCA and t-SNE of test-clip embeddings"))
    idx = z["strip_index"]
    attention = z["attention"][idx] if "attention" in z.files else None
    titles = [f"true {labels[z['truth'][i]]}, predicted {labels[z['pred'][i]]}" for i in idx]
    if len(idx):
        name = "attention.png" if attention is not None else "frames.png"
        plot_frame_strips(z["strip_frames"], attention, titles, run / name)
        figs.append(
            (
                name,
                "one test clip per class: the frames the model reads"
                + (", attention below" if attention is not None else ""),
            )
        )
    if len(z["wrong_index"]):
        wrong = [f"{labels[z['truth'][i]]} -> {labels[z['pred'][i]]}" for i in z["wrong_index"]]
        plot_gallery(z["wrong_frames"], wrong, run / "gallery.png")
        figs.append(("gallery.png", "misclassified clips (middle frame), true -> predicted"))
    caption = (
        "Embeddings (left: PCA, right: t-SNE), coloured by true class; the first test clip of each class, its"
        + " frames as the model reads them"
        + (", with the attention weight per frame (orange bars)" if attention is not None else "")
        + "; misclassified clips as true -> predicted."
    )
    return [Block("h2", "What the model sees"), Block("img", figs), Block("p", caption)]


def _comparison(compare: dict, cdir: Path, run: Path) -> list[Block]:
    if not compare:
        return []
    rows = [
        [
            s["model"],
            f"{s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}",
            f"{s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f}",
            f"{s['parameters']:,}",
            f"{s['train_minutes_mean']:.1f}",
            f"{s['clips_per_s_mean']:,.0f}",
        ]
        for s in compare["summary"]
    ]
    blocks = [
        Block("h2", "Ablation: variants on the same data and split"),
        Block(
            "p",
            f"{compare['test_clips']} test clips, training seeds {', '.join(map(str, compare['seeds']))}, "
            "mean ± std over seeds (from `compare.json`).",
        ),
        Block("table", (["model", "accuracy", "macro-F1", "parameters", "train min", "clips/s"], rows)),
    ]
    p = compare.get("paired")
    if p:
        a = p["accuracy"]
        verdict = "more than" if a["p_t"] is not None and a["p_t"] < 0.05 else "not clearly more than"
        blocks.append(
            Block(
                "p",
                f"Autoencoder vs none (`{p['a']}` minus `{p['b']}`, paired by seed): accuracy "
                f"{a['mean']:+.3f} ± {a['std']:.3f}, paired t-test p = {_p(a['p_t'])}: "
                f"{verdict} seed noise.",
            )
        )
    figs = _copy_compare_figures(cdir, run)
    if figs:
        blocks.append(Block("img", figs))
        blocks.append(
            Block(
                "p",
                "Right: accuracy as Gaussian noise, blur or an occluding square grows (mean over "
                "seeds, band ± std): the denoising autoencoder's test.",
            )
        )
    return blocks


def _copy_compare_figures(cdir: Path, run: Path) -> list[tuple[str, str]]:
    """The comparison's figures copied next to the report (an HTML or PDF report refers to files beside
    it), as (file name, alt text)."""
    figs = []
    for name, alt in (("compare.png", "accuracy and macro-F1 per variant"), ("robustness.png", "robustness curves")):
        if (cdir / name).exists():
            data = (cdir / name).read_bytes()
            atomic_write(run / f"compare_{name}", lambda fh, data=data: fh.write(data))
            figs.append((f"compare_{name}", alt))
    return figs


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _robustness(run: Path) -> list[Block]:
    rob = _read_json(run / "robustness.json")
    if not rob or not (run / "robustness.png").exists():
        return []
    return [Block("h2", "Robustness of this model"), Block("img", [("robustness.png", "robustness")])]


def _limitations(data: dict, metrics: dict, cfg: dict) -> list[Block]:
    items = []
    if data.get("synthetic"):
        items.append(
            "The data are vemo's procedurally rendered faces, not people: the numbers show that the "
            "pipeline learns, not how well it recognises human emotions."
        )
    if metrics:
        cm = np.array(metrics["confusion_matrix"])
        off = cm - np.diag(np.diag(cm))
        if off.sum():
            i, j = np.unravel_index(off.argmax(), off.shape)
            items.append(
                f"Most frequent confusion: {metrics['labels'][i]} read as {metrics['labels'][j]} "
                f"({off[i, j]} of {cm[i].sum()} clips)."
            )
        groups = data.get("groups", {}).get("test")
        if groups is not None and groups < 10:
            items.append(
                f"The test split holds {groups} groups only: expect several points of spread between "
                "splits and seeds; prefer k-fold (`prepare.folds`) for a firmer estimate."
            )
    p = cfg.get("prepare", {})
    side = data.get("size", p.get("size"))
    if data.get("kind") == "stills":
        finder = "the images are used as framed, with no face detection of vemo's"
    elif p.get("face") == "haar":
        finder = "the Haar detector misses profile and dark faces (those clips fall back to a centre crop)"
    else:
        finder = f"no face detection (`prepare.face` {p.get('face')}): a face off the frame's centre is cut"
    items += [
        f"Grayscale {side}x{side} crops drop colour and fine texture; {finder}.",
        "Next: k-fold cross-validation over actors, audio as a second modality (CREMA-D has it), a stronger "
        "pretrained frame encoder, test-time augmentation.",
    ]
    return [Block("h2", "Limitations and next steps"), Block("ul", items)]


def _provenance(env: dict) -> list[Block]:
    if not env:
        return []
    return [
        Block("h2", "How this run was made"),
        Block(
            "ul",
            [
                f"command: `{env.get('command')}`",
                f"vemo {env.get('vemo')} (git {str(env.get('git_commit'))[:10]}), torch {env.get('torch')}, python "
                f"{env.get('python')}; {env.get('cpu_count')} CPUs, {env.get('torch_threads')} threads; data manifest "
                f"sha256 `{str(env.get('data_manifest_sha256'))[:16]}`",
            ],
        ),
    ]


def find_compare(run: Path, compare_dir: str | Path | None) -> tuple[dict, Path]:
    """compare.json from `compare_dir`, the run folder, or its parent (a run inside a compare folder).
    A `compare_dir` given without one is refused: the report would silently lack the ablation asked for."""
    if compare_dir and not (Path(compare_dir) / "compare.json").is_file():
        raise FileNotFoundError(f"{compare_dir}: no compare.json there (give the folder `vemo compare --out` wrote)")
    for d in [Path(compare_dir)] if compare_dir else [run, run.parent]:
        if (d / "compare.json").exists():
            return _read_json(d / "compare.json"), d
    return {}, run


def build(run: Path, compare_dir: str | Path | None = None) -> tuple[str, list[Block]]:
    cfg = upgrade_saved(yaml.safe_load((run / "config.yaml").read_text())) if (run / "config.yaml").exists() else {}
    data = _read_json(run / "data.json")
    metrics = _read_json(run / "metrics.json")
    title = (
        "vemo report: "
        + str(cfg.get("model", {}).get("name", "run"))
        + (" on synthetic data" if data.get("synthetic") else "")
    )
    summary = f"Run folder `{run}`. Every number below is read from the files in it."
    blocks = [Block("h1", title), Block("p", summary), Block("h2", "Design"), _design(cfg, data)]
    blocks += _data(data, cfg)
    history = _history(run / "history.csv")
    blocks += _training(run, cfg, history, _read_json(run / "train.json"))
    blocks += _results(metrics)
    compare, cdir = find_compare(run, compare_dir)
    blocks += _comparison(compare, cdir, run)
    if not compare:
        blocks += _robustness(run)
    blocks += _figures(run)
    blocks += _limitations(data, metrics, cfg)
    blocks += _provenance(_read_json(run / "environment.json"))
    return title, blocks


# A folder holding one of these was written by `vemo train` (config.yaml first) or `vemo evaluate`.
RUN_MARKS = ("config.yaml", "metrics.json")


def write_report(run_dir: str | Path, compare_dir: str | Path | None = None, pdf: bool = True) -> Path:
    """Write report.md and report.html (and report.pdf when Chromium is available) into the run folder."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder")
    if not any((run / name).exists() for name in RUN_MARKS):
        raise ValueError(
            f"{run}: not a vemo run folder (none of {', '.join(RUN_MARKS)}); give a folder `vemo train --out` "
            "or `vemo evaluate --out` wrote, so no report is written into an unrelated folder"
        )
    title, blocks = build(run, compare_dir)
    write_text(run / "report.md", to_markdown(blocks))
    write_text(run / "report.html", to_html(blocks, run, title))
    if not (pdf and print_pdf(run / "report.html", run / "report.pdf")):
        (run / "report.pdf").unlink(missing_ok=True)  # an earlier report's PDF would no longer match the rest
    return run / "report.md"

"""The stages chained: what `vemo train` and `vemo demo` run. Each step is a library call.

`vemo compare`'s experiment driver, which chains the same stages for several variants and seeds, is
`vemo.experiments`, beside this module."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

from vemo.config import Config
from vemo.data.loading.prepare import Prepared, prepare, summarize
from vemo.evaluation.calibration import calibrate_checkpoint
from vemo.evaluation.evaluate import evaluate
from vemo.io import OutputError, folder_lock, write_json
from vemo.reporting.report import write_report
from vemo.training.distributed import inference_device
from vemo.training.trainer import check_train_config, check_trainable, train


def describe_data(prepared: Prepared, synthetic: bool = False) -> dict:
    """What the report says about the data: counts per split, actors per split, skips, face detection."""
    items = prepared.items
    groups: dict[str, set] = {}
    for it in items:
        groups.setdefault(it["split"], set()).add(it["group"])
    s = prepared.settings
    return {
        "dataset": s.dataset,
        "root": s.root,
        "cache": str(prepared.path),
        "synthetic": synthetic,
        "kind": prepared.kind,
        "n": len(items),
        "face_detected": sum(it["face_detected"] for it in items),
        "summary": summarize(len(items), prepared.skipped),
        "counts": prepared.counts,
        "groups": {k: len(v) for k, v in sorted(groups.items())},
        "frames": s.frames,
        "size": s.size,
        "seed": s.seed,
    }


def train_evaluate_report(
    cfg: Config,
    prepared: Prepared,
    out: Path,
    synthetic: bool,
    progress: bool,
    log=print,
    resume: bool = False,
    score_test: bool = True,
) -> dict:
    """Train on the prepared data, evaluate the best checkpoint on its test split, write the report.
    `score_test` False (`vemo train --no-test`) evaluates on val instead and leaves the test split
    unseen: for candidates and ablations, so a test set scores only the model that is released."""
    out.mkdir(parents=True, exist_ok=True)
    main_process = int(os.environ.get("RANK", "0")) == 0  # data-parallel runs: rank 0 evaluates and reports
    if main_process:
        write_json(out / "data.json", describe_data(prepared, synthetic))
    result = train(cfg, prepared, out, progress=progress, log=log, resume=resume)  # it writes the run's records
    if not main_process:
        return {}
    device = inference_device(cfg.train.device)
    # the temperature is fitted on val, which selected the checkpoint too; test never sees either choice
    calibrate_checkpoint(result.best_checkpoint, prepared, "val", log=log, device=device)
    has_test = len(prepared.indices("test")) > 0
    split = "test" if has_test and score_test else "val"
    if split == "val":
        why = "--no-test: the test split is left unscored" if has_test else "no test split in this data"
        log(f"\n{why}: evaluating on val, which also selected the checkpoint (optimistic)")
    log(f"\n{split} set:")
    metrics = evaluate(result.best_checkpoint, prepared, out, split=split, log=log, device=device)
    report = write_report(out)
    log(f"\nreport: {report}")
    return metrics


def run_demo(cfg: Config, progress: bool = True, log=print) -> dict:
    """Synthesise the embedded dataset, prepare it, train, evaluate and report, under cfg.out."""
    from vemo.data.synth.dataset import synthesize

    started = time.time()
    out = Path(cfg.out)
    root = Path(cfg.prepare.root)
    with folder_lock(out, "vemo demo", log=log):
        log(f"1/3 synthesising {root} ...")
        synthesize(root, cfg.synth, progress=progress)
        log("2/3 preparing clips ...")
        prepared = prepare(cfg.prepare, progress=progress, log=log)
        log("3/3 training, evaluating on the test actors, writing the report ...")
        metrics = train_evaluate_report(cfg, prepared, out, synthetic=True, progress=progress, log=log)
    minutes = (time.time() - started) / 60
    log(
        f"demo finished in {minutes:.1f} min: test accuracy {metrics['accuracy']:.3f} "
        f"(chance {1 / len(metrics['labels']):.3f}), macro-F1 {metrics['macro_f1']:.3f}; report {out / 'report.md'}"
    )
    metrics["demo_minutes"] = minutes
    return metrics


def _ddp_worker(cfg_dict: dict, data: str, out: str, progress: bool, resume: bool, score_test: bool) -> None:
    from vemo.config import config_from_dict
    from vemo.data.loading.prepare import load_prepared

    cfg, prepared = config_from_dict(cfg_dict), load_prepared(data)
    train_evaluate_report(cfg, prepared, Path(out), False, progress, resume=resume, score_test=score_test)


def train_command(
    cfg: Config,
    data: str | None,
    devices: int = 1,
    num_nodes: int = 1,
    progress: bool = True,
    resume: bool = False,
    force: bool = False,
    log=print,
    score_test: bool = True,
) -> None:
    """`vemo train`: take the run folder (locked for the whole run; another run in it is refused unless
    resumed or forced), prepare (or load) the data, then train in one process or data-parallel."""
    from vemo.data.loading.prepare import load_prepared

    if num_nodes > 1 and "WORLD_SIZE" not in os.environ:
        raise ValueError(
            "multi-node training is started by torchrun (or srun) on every node, e.g. `torchrun --nnodes "
            f"{num_nodes} --nproc-per-node {devices} --rdzv-endpoint HOST:29500 -m vemo.cli train ...`"
        )
    check_train_config(cfg)  # before any work: a bad setting is not found after minutes of preparing
    out = Path(cfg.out)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, global rank 0 holds the folder
    with folder_lock(out, "vemo train", log=log) if main_process else nullcontext(out):
        if main_process:
            claim_run_folder(out, resume, force, log)
        prepared = load_prepared(data) if data else prepare(cfg.prepare, progress=progress)
        check_trainable(prepared)  # before the run's first record is written
        if devices > 1 and "WORLD_SIZE" not in os.environ:
            from vemo.training.distributed import launch

            launch(_ddp_worker, devices, cfg.to_dict(), str(prepared.path), str(out), progress, resume, score_test)
        else:
            train_evaluate_report(cfg, prepared, out, False, progress, resume=resume, score_test=score_test)
            if "WORLD_SIZE" in os.environ:  # one of torchrun's processes: leave the group with the others
                from vemo.training.distributed import finish

                finish()


# What a run writes at its top level (and its `eval-*` folders): `--force` deletes exactly these before a
# new run, so the folder never mixes two runs' files, and never touches anything else in it.
RUN_FILES = (
    "config.yaml",
    "environment.json",
    "data.json",
    "train.json",
    "history.csv",
    "curves.png",
    "reliability.png",
    "best.pt",
    "last.pt",
    "metrics.json",
    "confusion.png",
    "predictions.csv",
    "embeddings.npz",
    "embeddings.png",
    "gallery.png",
    "frames.png",
    "attention.png",
    "compare_compare.png",
    "compare_robustness.png",
    "robustness.json",
    "robustness.png",
    "run.json",
    "report.md",
    "report.html",
    "report.pdf",
)


def claim_run_folder(out: Path, resume: bool, force: bool, log=print) -> None:
    """Refuse to start a run over another one: a finished run (train.json or metrics.json) or an
    interrupted one (last.pt) is kept unless `--resume` continues it or `--force` replaces it; with
    `--force` the old run's files are deleted first. Called while holding the folder's lock."""
    finished = [n for n in ("train.json", "metrics.json") if (out / n).exists()]
    started = [n for n in ("last.pt", "best.pt", "config.yaml") if (out / n).exists()]
    if resume or not (finished or started):
        return
    if not force:
        state = f"a finished run ({', '.join(finished)})" if finished else f"an interrupted run ({', '.join(started)})"
        hint = "" if finished else "--resume to continue it, "
        raise OutputError(f"{out}: holds {state}; {hint}--force to replace it, or choose another --out")
    old = [out / n for n in RUN_FILES if (out / n).exists()] + sorted(out.glob("eval-*"))
    for path in old:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    log(f"--force: deleted the previous run in {out} ({len(old)} files and folders)")

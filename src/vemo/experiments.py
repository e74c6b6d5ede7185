"""`vemo compare`, the experiment driver: variants trained on the same prepared data and split, several
seeds each, side by side.

It chains stages as `pipeline.py` does for `vemo train` (and sits beside it): prepare the data once,
then for each (variant, seed) train (which writes the run's records, `train.json` included, as
`vemo train` does), calibrate, evaluate on the test split, time inference and measure robustness to
noise/blur/occlusion; then hand the runs to `vemo.evaluation.compare` for the statistics (mean +- std
per variant, the paired test of the autoencoder against the plain CNN-LSTM), write compare.json/.md/.png
and the main variant's report with the ablation in it.

Finished runs are reused (their run.json exists), so an interrupted compare continues.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from vemo.config import Config, PrepareConfig
from vemo.data.loading.loader import load_split
from vemo.data.loading.prepare import Prepared, prepare
from vemo.evaluation.calibration import calibrate_checkpoint
from vemo.evaluation.compare import compare_markdown, comparison
from vemo.evaluation.evaluate import evaluate, robustness
from vemo.evaluation.inference import predict
from vemo.evaluation.robustness import DEFAULT_LEVELS
from vemo.io import folder_lock, write_json, write_text
from vemo.pipeline import describe_data
from vemo.reporting.plots import plot_compare, plot_robustness
from vemo.reporting.report import write_report
from vemo.training.trainer import train

# The pair whose difference is the ablation; cnn_ae_lstm_attn and c3d on request (--models): 3 seeds of
# each of four variants take ~40 min on 2 cores, twice the budget of a default run.
DEFAULT_VARIANTS = ["cnn_lstm", "cnn_ae_lstm"]
DEFAULT_SEEDS = [0, 1, 2]
# Every other level of `vemo evaluate --perturb`'s defaults (clean, middle, strongest): the curves keep
# their shape at half the cost (robustness is a sizeable share of a short run's time).
ROBUSTNESS_LEVELS = {kind: levels[::2] for kind, levels in DEFAULT_LEVELS.items()}


def inference_speed(checkpoint: Path, prepared: Prepared, repeats: int = 3) -> float:
    """Test clips per second through the model alone (best of `repeats`)."""
    from vemo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model()
    x, _ = load_split(prepared, "test")
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, x, ckpt.stats)
        best = max(best, len(x) / (time.perf_counter() - start))
    return best


def run_variant(cfg: Config, prepared: Prepared, run_dir: Path, log) -> dict:
    """Train + evaluate + time + robustness for one (variant, seed), or read it back if already done."""
    done = run_dir / "run.json"
    if done.exists():
        log(f"reusing {run_dir}")
        return json.loads(done.read_text())
    quiet = lambda *_: None  # noqa: E731
    result = train(cfg, prepared, run_dir, progress=False, log=quiet, resume=True)  # it writes train.json
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


def compare_variants(
    cfg: Config,
    prepared: Prepared,
    out_dir: str | Path,
    variants: list[str] | None = None,
    seeds: list[int] | None = None,
    log=print,
) -> dict:
    """Run every (variant, seed) into `out_dir/<variant>-seed<seed>/`, then write compare.json, compare.md,
    compare.png and robustness.png into `out_dir`. Returns compare.json's content."""
    variants = variants or DEFAULT_VARIANTS
    seeds = seeds if seeds is not None else DEFAULT_SEEDS
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    runs = []
    for name in variants:
        for seed in seeds:
            run_cfg = copy.deepcopy(cfg)
            run_cfg.model.name, run_cfg.train.seed = name, seed
            runs.append(run_variant(run_cfg, prepared, out / f"{name}-seed{seed}", log))
    s = prepared.settings
    data = {
        "data": str(prepared.path),
        "dataset": s.dataset,
        "test_clips": int(len(prepared.indices("test"))),
        "split_seed": s.seed,
    }
    result = {**comparison(runs, variants, seeds, data), "minutes": (time.time() - started) / 60}
    write_json(out / "compare.json", result)
    plot_compare(result["summary"], out / "compare.png")
    plot_robustness(result["robustness"], out / "robustness.png")
    write_text(out / "compare.md", compare_markdown(result))
    log(compare_markdown(result))
    return result


def run_compare(
    cfg: Config,
    data: str | None,
    out: Path,
    models: list[str] | None,
    seeds: list[int] | None,
    progress: bool,
    log=print,
) -> dict:
    """`vemo compare`: prepare (rendering the synthetic set first if it is the default and missing),
    train and compare the variants, then write the main variant's report with the ablation in it."""
    from vemo.data.loading.prepare import load_prepared
    from vemo.data.synth.dataset import synthesize

    synthetic = cfg.prepare.dataset == "crema-d" and cfg.prepare.root == PrepareConfig().root
    with folder_lock(out, "vemo compare", log=log):
        if data:
            prepared = load_prepared(data)
        else:
            if synthetic:
                synthesize(cfg.prepare.root, cfg.synth, progress=progress)  # reuses clips already rendered
            prepared = prepare(cfg.prepare, progress=progress, log=log)
        result = compare_variants(cfg, prepared, out, models, seeds, log=log)
        main = next((r for r in result["runs"] if r["model"] == "cnn_ae_lstm"), result["runs"][0])
        write_json(Path(main["run_dir"]) / "data.json", describe_data(prepared, synthetic and not data))
        report = write_report(main["run_dir"], out)
    log(f"compare: {out / 'compare.md'} ({result['minutes']:.1f} min); report with the ablation: {report.parent}")
    return result

"""The records of a training run's folder, all written by one function, `write_run_records`.

A run folder holds, besides checkpoints and evaluation results, the records of how it was trained:
`config.yaml` (resolved, with the preprocessing the data really had), `environment.json` (versions,
command, machine, the data manifest's hash), `history.csv` (one row per epoch), `curves.png` (drawn
from that history) and `train.json` (the summary: best epoch, epochs run, why training stopped,
timings). `vemo train`, `vemo demo` and every run of `vemo compare` write them through `train()`,
which calls this function, so no run lacks a record and no reader has to rebuild one (the report
reads `train.json`, it does not re-derive the best epoch).

It lives in `training/` because the trainer is its only caller and the records describe training;
`reporting/` only reads them (and draws `curves.png` for it: `reporting.plots.plot_curves`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from vemo.io import write_json, write_text

HISTORY_FIELDS = (
    "stage",
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "recon_loss",
    "lr",
    "seconds",
)
# What train_loss and val_loss are (the same quantity for both, so the curves compare like with like).
LOSS_MEANING = (
    "cross-entropy without label smoothing and without the reconstruction term (recon_loss, its own "
    "column); train: running mean over the epoch on augmented inputs, val: at the epoch's end on clean inputs"
)


def write_run_records(
    out: str | Path,
    *,
    config=None,
    data_manifest: str | Path | None = None,
    history: Sequence[dict] | None = None,
    summary: dict | None = None,
) -> None:
    """Write the records given, each atomically, into the run folder `out`:

    - `config` (a `Config`, when a run starts or resumes): `config.yaml`, and `environment.json` with
      the sha256 of `data_manifest`;
    - `history` (the rows so far, after every epoch): `history.csv`;
    - `summary` (when the run has finished; give the whole `history` with it): `curves.png` and
      `train.json`.
    """
    out = Path(out)
    if config is not None:
        from vemo.provenance import environment

        config.save(out / "config.yaml")
        write_json(out / "environment.json", environment(data_manifest))
    if history is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        write_text(out / "history.csv", buf.getvalue())
    if summary is not None:
        from vemo.reporting.plots import plot_curves

        if (out / "history.csv").exists():
            plot_curves(out / "history.csv", out / "curves.png")
        write_json(out / "train.json", {k: str(v) if isinstance(v, Path) else v for k, v in summary.items()})

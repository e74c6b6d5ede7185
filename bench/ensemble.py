"""What averaging several trained models buys, on the validation split only.

    .venv/bin/python bench/ensemble.py --data cache/fer2013-<key> --checkpoints default fast runs/fer2013/best.pt

Each checkpoint scores the split with flip averaging on (whatever its config says) and its own fitted
temperature; then every subset of two or more is scored by the mean of its members' probabilities (the
rule fixed before any ensemble was measured). Prints accuracy and NLL per member and per subset, so the
choice of members is made here and never on a test split. The members' probabilities are kept in
`--keep` (one file per checkpoint and split), so adding a member rescores only that one.

`--without-duplicates` scores every line twice: on the whole split and on the split without the items
whose pixels equal a training item's (FER2013 repeats some images across its splits; a model has seen
those in training, so they read as near-certain hits and make the whole split's figure optimistic).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from vemo.checkpoint import load_checkpoint, resolve_checkpoint
from vemo.data.loading.leakage import cross_split_duplicates
from vemo.data.loading.loader import load_split
from vemo.data.loading.prepare import Prepared, load_prepared
from vemo.evaluation.inference import check_frame_size, predict
from vemo.provenance import file_sha256


def member_probs(name: str, prepared: Prepared, x: torch.Tensor, split: str, keep: Path) -> torch.Tensor:
    """(N, C) calibrated probabilities of one checkpoint on the split's clips `x`, cached by the file's bytes."""
    digest = file_sha256(resolve_checkpoint(name))[:16]
    cached = keep / f"{Path(prepared.path).name}-{split}-{digest}.pt"
    if cached.exists():
        return torch.load(cached, weights_only=True)
    ckpt = load_checkpoint(name)
    check_frame_size(ckpt, prepared)
    model = ckpt.build_model()
    model.flip_average = True
    probs = predict(model, x, ckpt.stats, temperature=ckpt.temperature)["probs"]
    keep.mkdir(parents=True, exist_ok=True)
    torch.save(probs, cached)
    return probs


def seen_in_training(prepared: Prepared, split: str) -> torch.Tensor:
    """(N,) bool over the split's items, in `load_split`'s order: True where the item's pixels equal a
    training item's."""
    train, items = prepared.indices("train"), prepared.indices(split)
    dups = cross_split_duplicates(["train"] * len(train) + [split] * len(items), prepared.frames()[np.r_[train, items]])
    return torch.tensor([len(train) + k in dups for k in range(len(items))], dtype=torch.bool)


def scores(probs: torch.Tensor, y: torch.Tensor, unseen: torch.Tensor | None = None) -> str:
    """Accuracy and NLL; with `unseen` (a mask), the same again on the masked items alone."""
    hit = probs.argmax(1) == y
    nll = -probs.clamp_min(1e-12).log()[torch.arange(len(y)), y]
    line = f"accuracy {hit.float().mean().item():.4f}  NLL {nll.mean().item():.4f}"
    if unseen is not None:
        line += f"  | without duplicates: accuracy {hit[unseen].float().mean().item():.4f}"
        line += f"  NLL {nll[unseen].mean().item():.4f}"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="the prepared cache folder the checkpoints were trained on")
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--keep", default="runs/measure/ensemble", help="folder for the members' probabilities")
    ap.add_argument("--without-duplicates", action="store_true", help="also score without items seen in training")
    args = ap.parse_args()
    prepared = load_prepared(args.data)
    x, y = load_split(prepared, args.split)  # read once, scored by every member not yet kept
    unseen = None
    if args.without_duplicates:
        if args.split == "train":
            ap.error("--without-duplicates compares a split with train; use --split val")
        unseen = ~seen_in_training(prepared, args.split)
    probs = {name: member_probs(name, prepared, x, args.split, Path(args.keep)) for name in args.checkpoints}
    print(f"{args.split}: {len(y)} clips, flip averaging on, each member at its own temperature")
    if unseen is not None:
        print(f"  {int((~unseen).sum())} of them repeat a training item's pixels; {int(unseen.sum())} do not")
    for name, p in probs.items():
        print(f"  {name:<48} {scores(p, y, unseen)}")
    for k in range(2, len(probs) + 1):
        for subset in itertools.combinations(probs, k):
            mean = torch.stack([probs[n] for n in subset]).mean(0)
            print(f"  mean of {' + '.join(subset):<40} {scores(mean, y, unseen)}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

"""Does a model still read an expression when the sequence starts from neutral? On the validation split only.

Real expression sequences (posed neutral-to-apex sets, acted clips) begin with neutral frames; the
FER2013 evaluation protocol makes every frame of a sequence show the expression. This takes
`--limit` expressive (non-neutral) validation images, makes each one's fixed evaluation sequence, and
replaces its first k frames by the first k frames of a neutral validation image's sequence (another
person: a stand-in for a real onset, harder in that the identity changes, easier in that the switch is
abrupt). For each k it prints accuracy on the expression, the share predicted neutral, and accuracy
when neutral cannot be predicted (as `vemo evaluate` scores a dataset without a neutral class: the
shared classes' probabilities, renormalised).

    .venv/bin/python bench/onset.py --data cache/fer2013-<key> --checkpoints default runs/x/best.pt [--limit 1000]

Flip averaging is on for every checkpoint (as the shipped models use it); seeds fixed (--seed).
"""

from __future__ import annotations

import argparse

import torch

from vemo.checkpoint import load_checkpoint
from vemo.data.loading.loader import load_split
from vemo.data.loading.prepare import Prepared, load_prepared
from vemo.data.preprocessing.stills import to_sequences
from vemo.evaluation.inference import check_frame_size, predict
from vemo.training.trainer import NEUTRAL


def onset_sets(prepared: Prepared, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Expressive val sequences, neutral partner sequences, their labels, and the neutral class index."""
    t = prepared.settings.frames
    x, y = load_split(prepared, "val", expand=False)
    if NEUTRAL not in prepared.labels:
        raise SystemExit(f"{prepared.path}: no {NEUTRAL!r} class to start from ({', '.join(prepared.labels)})")
    neutral = list(prepared.labels).index(NEUTRAL)
    g = torch.Generator().manual_seed(seed)
    expressive = torch.nonzero(y != neutral).flatten()
    expressive = expressive[torch.randperm(len(expressive), generator=g)[:limit]]
    neutrals = torch.nonzero(y == neutral).flatten()
    partner = neutrals[torch.randint(len(neutrals), (len(expressive),), generator=g)]
    return to_sequences(x[expressive], t), to_sequences(x[partner], t), y[expressive], neutral


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a prepared FER2013 cache (vemo prepare)")
    p.add_argument("--checkpoints", nargs="+", default=["default"])
    p.add_argument("--limit", type=int, default=1000, help="expressive validation images")
    p.add_argument("--ks", type=int, nargs="+", default=[0, 3, 5, 7], help="neutral frames at the start")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    prepared = load_prepared(args.data)
    t = prepared.settings.frames
    if bad := [k for k in args.ks if not 0 <= k < t]:
        p.error(f"--ks {bad}: neutral frames must be 0 .. {t - 1} (T = {t}: at least one frame shows the expression)")
    seqs, partners, y, neutral = onset_sets(prepared, args.limit, args.seed)
    print(f"{len(y)} expressive validation images, T = {t}; accuracy / share predicted neutral / accuracy "
          "without the neutral class")  # fmt: skip
    print(f"{'checkpoint':<40}" + "".join(f"{f'k={k}':>22}" for k in args.ks))
    for name in args.checkpoints:
        ckpt = load_checkpoint(name)
        check_frame_size(ckpt, prepared)
        model = ckpt.build_model()
        model.flip_average = True
        cells = []
        for k in args.ks:
            clips = torch.cat([partners[:, :k], seqs[:, k:]], 1)
            probs = predict(model, clips, ckpt.stats, temperature=ckpt.temperature)["probs"]
            pred = probs.argmax(1)
            probs[:, neutral] = -1
            without = probs.argmax(1)
            rates = [(pred == y).float().mean(), (pred == neutral).float().mean(), (without == y).float().mean()]
            cells.append(" / ".join(f"{r:.3f}" for r in rates))
        print(f"{name:<40}" + "".join(f"{c:>22}" for c in cells), flush=True)


if __name__ == "__main__":
    main()

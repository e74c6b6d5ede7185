"""How much the still -> sequence protocol's moved views add, on the validation split only.

    .venv/bin/python bench/static_views.py --checkpoint default --data cache/fer2013-<key> [--split val]

vemo scores a still as a 10-frame sequence of gently moved views of it (vemo.data.preprocessing.stills),
a mild test-time augmentation that image-level FER2013 results do not have. This scores the same
weights on the same images two ways: the protocol's sequence, and the still repeated T times (no
motion: what the model would see of a photo with no views added). The gap says how far vemo's FER2013
figures sit from an image-level reading of the same model. Flip averaging stays as the checkpoint has
it in both. Never run on a test split.
"""

from __future__ import annotations

import torch

from validation import arguments, load
from vemo.data.loading.loader import load_split
from vemo.evaluation.inference import predict


def main() -> None:
    args = arguments(__doc__).parse_args()
    ckpt, model, prepared = load(args.checkpoint, args.data)
    if prepared.kind != "stills":
        raise SystemExit(f"{args.data}: not a stills dataset; this compares views of stills")
    moved, y = load_split(prepared, args.split)
    stills, _ = load_split(prepared, args.split, expand=False)
    static = stills.expand(-1, moved.shape[1], -1, -1).contiguous()
    print(f"{args.checkpoint} on {args.split} ({len(y)} stills, T = {moved.shape[1]})")
    for name, x in (("the protocol's moved views", moved), ("the still repeated (no views)", static)):
        logits = predict(model, x, ckpt.stats)["logits"]
        correct = int((logits.argmax(1) == y).sum())
        print(f"  {name:<30} accuracy {correct / len(y):.4f} ({correct}/{len(y)})")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

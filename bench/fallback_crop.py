"""What the centre-crop fallback costs on a face crop: accuracy on validation stills cropped to a centred
square of a fraction of their side (the crop `prepare` takes when no face is detected), on the validation
split only.

A picture where even the padded second detection try finds no face is, in a cropped dataset (a folder
of face crops, posed sequences cut around the face), still a face crop: the fallback's crop should then
be FER2013's own framing, the whole picture. A smaller fraction zooms in past it.

    .venv/bin/python bench/fallback_crop.py --data cache/fer2013-<key> [--checkpoint default] [--limit 1000]

Flip averaging on, as the shipped models use it; the images are a seeded random subset (--seed).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from validation import load
from vemo.data.loading.loader import load_split
from vemo.data.preprocessing.face import center_box, crop_square
from vemo.data.preprocessing.stills import to_sequences
from vemo.evaluation.inference import predict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a prepared FER2013 cache (vemo prepare)")
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--limit", type=int, default=1000, help="validation images")
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.9, 0.8])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ckpt, model, prepared = load(args.checkpoint, args.data)
    model.flip_average = True
    x, y = load_split(prepared, "val", expand=False)
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))[: args.limit]
    x, y, size = x[pick], y[pick], prepared.settings.size
    print(f"{len(y)} validation images, checkpoint {args.checkpoint}, T = {prepared.settings.frames}")
    for frac in args.fractions:
        crops = np.stack([crop_square(im, center_box(im.shape, frac), size, 0.0) for im in x[:, 0].numpy()])
        seqs = to_sequences(torch.from_numpy(crops)[:, None], prepared.settings.frames)
        pred = predict(model, seqs, ckpt.stats, temperature=ckpt.temperature)["probs"].argmax(1)
        print(f"centred square of {frac:.2f} of the side: accuracy {(pred == y).float().mean():.3f}", flush=True)


if __name__ == "__main__":
    main()

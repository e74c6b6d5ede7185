"""Does averaging extra test-time views (zoom, shift, rotation) help? On the validation split only.

    .venv/bin/python bench/tta_views.py --checkpoint runs/A.pt --data cache/fer2013-<key> [--split val]

Each view moves every frame of every clip by one fixed affine transform (zoom by 10 %, shift by 2
pixels, rotate by 6 degrees, each both ways), as if the face had been cropped a little differently;
the model scores each view (flip averaging as the checkpoint has it) and the calibrated probabilities
of groups of views are averaged, as a multi-crop test-time augmentation would. Prints each view alone
(how much the framing moves accuracy) and each group with the plain clip. Costs one model pass per view
(about a minute each for a width-32 model on 2 CPU cores). Never run on a test split.
"""

from __future__ import annotations

import math

import torch

from validation import arguments, load
from vemo.data.loading.loader import load_split
from vemo.data.preprocessing.augment import warp_clips
from vemo.evaluation.inference import predict

VIEWS = {
    "plain": {},
    "zoom in 10%": {"zoom": 1.1},
    "zoom out 10%": {"zoom": 0.9},
    "shift right 2 px": {"dx": 2},
    "shift left 2 px": {"dx": -2},
    "shift down 2 px": {"dy": 2},
    "shift up 2 px": {"dy": -2},
    "rotate +6 deg": {"rot": 6},
    "rotate -6 deg": {"rot": -6},
}
GROUPS = {"zoom": ["zoom in 10%", "zoom out 10%"], "shift": [v for v in VIEWS if v.startswith("shift")],
          "rotate": ["rotate +6 deg", "rotate -6 deg"], "all nine": list(VIEWS)[1:]}  # fmt: skip


def view(x: torch.Tensor, zoom: float = 1.0, dx: float = 0.0, dy: float = 0.0, rot: float = 0.0) -> torch.Tensor:
    """uint8 clips (B, T, S, S) under one affine transform (border pixels repeated), back to uint8:
    zoom > 1 zooms in, dx/dy move the content right/down by that many pixels, rot in degrees."""
    b, _, h, w = x.shape

    def each(v: float) -> torch.Tensor:
        return torch.full((b,), float(v), dtype=torch.float64)  # as exact as the constants: theta rounds once

    out = warp_clips(x.float(), each(math.radians(rot)), each(zoom), each(-dx * 2 / w), each(-dy * 2 / h), each(1))
    return out.round().clamp(0, 255).to(torch.uint8)


def main() -> None:
    args = arguments(__doc__).parse_args()
    ckpt, model, prepared = load(args.checkpoint, args.data)
    x, y = load_split(prepared, args.split)
    print(f"{args.checkpoint} on {args.split} ({len(y)} clips); calibrated probabilities averaged over views")
    probs = {}
    for name, kw in VIEWS.items():
        probs[name] = predict(model, view(x, **kw) if kw else x, ckpt.stats, temperature=ckpt.temperature)["probs"]
        print(f"  {name:<28} alone           accuracy {(probs[name].argmax(1) == y).float().mean():.4f}", flush=True)
    for group, names in GROUPS.items():
        mean = torch.stack([probs[n] for n in ["plain", *names]]).mean(0)
        print(f"  plain + {group:<20} ({len(names) + 1} views) accuracy {(mean.argmax(1) == y).float().mean():.4f}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

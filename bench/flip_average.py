"""What flip averaging (`model.flip_average`) buys a checkpoint, on its validation split only.

    .venv/bin/python bench/flip_average.py --checkpoint default --data cache/fer2013-<key> [--split val]

`--data` is the prepared cache the checkpoint was trained on (`vemo train` prints its folder). Prints the
split's accuracy with the clip as it is, its mirror image alone, and the two averaged (logits, and
probabilities), for the same weights: the comparison behind `flip_average: true` in configs/fer2013_cycle2.yaml.
Never run on a test split: the choice it informs would then be made on the data that scores it.
"""

from __future__ import annotations

import torch

from validation import arguments, load
from vemo.data.loading.loader import load_split
from vemo.evaluation.inference import predict


def main() -> None:
    args = arguments(__doc__).parse_args()
    ckpt, model, prepared = load(args.checkpoint, args.data)
    model.flip_average = False  # the two views are computed apart here, so each can be scored alone
    x, y = load_split(prepared, args.split)
    plain = predict(model, x, ckpt.stats)["logits"]
    mirror = predict(model, x.flip(-1), ckpt.stats)["logits"]
    rows = {
        "as it is": plain,
        "mirror image": mirror,
        "average of logits (flip_average)": (plain + mirror) / 2,
        "average of probabilities": plain.softmax(1) + mirror.softmax(1),
    }
    print(f"{args.checkpoint} on {args.split} ({len(y)} clips)")
    for name, scores in rows.items():
        print(f"  {name:<34} accuracy {(scores.argmax(1) == y).float().mean().item():.4f}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

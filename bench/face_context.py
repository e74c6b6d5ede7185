"""Face crops and the detector: how many faces that fill their picture vemo finds, with and without the
second, padded try (`vemo.data.preprocessing.face._detect_in_context`), and what it costs.

A cropped dataset (FER2013, or a user's folder of face crops) gives the Haar cascade no context around
the face, so the plain pass misses most of them and `predict` would report `no-face` on a face. This
prints, over FER2013 images (a folder of class folders of .jpg):

  - the share of images with a face found by the plain pass and by `detect_all` (plain, then padded);
  - where the padded pass found the face: image side / box side and centre offset (the crop `prepare`
    then takes, at margin 0, is nearly the image: FER2013's own framing);
  - milliseconds per image for each;
  - with --clips, false alarms: the padded pass on the left and right quarters of each clip's middle
    frame (background only in CREMA-D's centred shots), where any box found is a false face.

    .venv/bin/python bench/face_context.py [--root PATH/TO/fer2013/train] [--limit 100] [--clips DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from fer_framing import fer_files  # bench/ runs as scripts: the sibling module
from vemo.data.preprocessing.face import _detect, _detect_in_context, detect_all
from vemo.data.sources.video import decode_gray


def timed(fn, images: list[np.ndarray]) -> tuple[list, float]:
    start = time.perf_counter()
    out = [fn(g) for g in images]
    return out, 1000 * (time.perf_counter() - start) / max(1, len(images))


def fer_images(root: Path, limit: int) -> list[np.ndarray]:
    files = fer_files(root, limit)
    return [g for f in files if (g := cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)) is not None]


def report_crops(images: list[np.ndarray]) -> None:
    plain, t_plain = timed(lambda g: _detect(g, 6), images)
    both, t_both = timed(detect_all, images)
    n = len(images)
    print(f"{n} images: face found by the plain pass {sum(map(bool, plain)) / n:.1%} ({t_plain:.2f} ms/image), "
          f"plain then padded {sum(map(bool, both)) / n:.1%} ({t_both:.2f} ms/image)")  # fmt: skip
    rescued = [(g, b[0]) for g, p, b in zip(images, plain, both, strict=True) if not p and b]
    if rescued:
        ratio = np.array([g.shape[0] / max(b[2], b[3]) for g, b in rescued])
        off = np.array([((g.shape[1] / 2 - b[0] - b[2] / 2) / b[2], (g.shape[0] / 2 - b[1] - b[3] / 2) / b[3])
                        for g, b in rescued])  # fmt: skip
        print(f"found by the padded pass only: {len(rescued)}; image side / box side median {np.median(ratio):.3f} "
              f"(quartiles {np.percentile(ratio, 25):.3f} .. {np.percentile(ratio, 75):.3f}); centre offset "
              f"x {np.median(off[:, 0]):+.3f}, y {np.median(off[:, 1]):+.3f} box sides")  # fmt: skip


def report_false_alarms(clips: Path) -> None:
    strips = []
    for clip in sorted(p for p in clips.iterdir() if p.is_file()):
        frames = decode_gray(clip)
        mid = frames[len(frames) // 2]
        q = mid.shape[1] // 4
        strips += [mid[:, :q], mid[:, -q:]]
    alarms, ms = timed(_detect_in_context, strips)
    print(f"padded pass on {len(strips)} background strips (no face): {sum(map(bool, alarms))} with a box "
          f"({ms:.2f} ms/strip)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "train"
    p.add_argument("--root", type=Path, default=default, help="FER2013 images: a folder of class folders")
    p.add_argument("--limit", type=int, default=100, help="images per class (0: all)")
    p.add_argument("--clips", type=Path, help="a folder of centred-face videos (CREMA-D) for the false-alarm check")
    args = p.parse_args()
    cv2.setNumThreads(1)
    report_crops(fer_images(args.root, args.limit))
    if args.clips:
        report_false_alarms(args.clips)


if __name__ == "__main__":
    main()

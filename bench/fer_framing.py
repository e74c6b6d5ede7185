"""How FER2013 frames a face, in units of vemo's face detector's box: the measurement behind
`prepare.margin` (the crop that makes a face in a video look like a FER2013 face).

Each PublicTest image (48x48, the face filling most of it) is upscaled 4x and padded by edge
replication on every side, so the Haar cascade sees a face in context as it would in a video frame;
the detected box is mapped back to the 48x48 image. FER2013's frame is then the whole image: its side
relative to the box side (-> margin) and its centre relative to the box centre, in box sides (a crop
centred on the box is right when both offsets are near 0).

    .venv/bin/python bench/fer_framing.py [--root PATH/TO/fer2013/test] [--limit N]
        [--clips PATH/TO/crema-d/VideoFlash --sheet framing.png]

With --clips and --sheet it also draws a figure: one FER2013 PublicTest face per class on top, then the
middle frame of each clip as `prepare` crops it at the measured margin and, for comparison, with a
wider crop (margin 0.4, face detector boxes grown by 40%, as tools that keep hair and chin do).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from vemo.data.preprocessing.face import _detect

UP, PAD = 4, 96  # 48 -> 192 pixels, then 96 pixels of replicated border on each side


def fer_files(root: Path, limit: int = 0) -> list[Path]:
    """The .jpg files of a folder of class folders (FER2013's layout), the first `limit` per class (0: all)."""
    files: list[Path] = []
    for cdir in sorted(d for d in root.iterdir() if d.is_dir()):
        names = sorted(cdir.glob("*.jpg"))
        files += names[:limit] if limit else names
    return files


def measure(path: Path) -> tuple[float, float, float] | None:
    """(image side / box side, (image centre x - box centre x) / box side, same for y), or None."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return None
    big = cv2.resize(gray, None, fx=UP, fy=UP, interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    # the plain pass only: the image is already padded here, and detect_all's own padded try would pad it again
    boxes = sorted(_detect(big, min_fraction=4), key=lambda b: -b[2] * b[3])
    if not boxes:
        return None
    x, y, w, h = boxes[0]
    side = max(w, h)
    img_side, img_c = gray.shape[0] * UP, PAD + gray.shape[0] * UP / 2
    return img_side / side, (img_c - (x + w / 2)) / side, (img_c - (y + h / 2)) / side


def framing_sheet(fer_root: Path, clips: Path, png: Path, margin: float) -> None:
    """FER2013 faces above video crops at `margin` and at a wider margin, all 48x48, nearest upscaling."""
    from matplotlib.figure import Figure

    from vemo.config import PrepareConfig
    from vemo.data.loading.prepare import process_clip

    fer = [cv2.imread(str(sorted((fer_root / c).glob("*.jpg"))[0]), cv2.IMREAD_GRAYSCALE)
           for c in sorted(d.name for d in fer_root.iterdir() if d.is_dir())]  # fmt: skip
    videos = sorted(clips.glob("*.flv"))
    rows = [("FER2013 PublicTest", fer)]
    for m, name in ((margin, f"video, margin {margin:.2f} (FER2013's framing)"), (0.4, "video, margin 0.40")):
        cfg = PrepareConfig(frames=10, margin=m)
        rows.append((name, [process_clip(str(v), cfg)[0][5] for v in videos]))
    cols = max(len(r[1]) for r in rows)
    fig = Figure(figsize=(1.3 * cols, 1.5 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[r, 0].set_title(name, loc="left", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print(f"wrote {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "test"
    p.add_argument("--root", type=Path, default=default)
    p.add_argument("--limit", type=int, default=0, help="images per class (0: all)")
    p.add_argument("--clips", type=Path, help="a folder of video clips to crop for the figure")
    p.add_argument("--sheet", type=Path, help="write the framing figure here (needs --clips)")
    args = p.parse_args()
    files = fer_files(args.root, args.limit)
    found = [m for f in files if (m := measure(f)) is not None]
    if not found:
        raise SystemExit(f"no face found in {len(files)} images under {args.root}")
    a = np.array(found)
    print(f"face found in {len(a)} of {len(files)} images ({len(a) / len(files):.1%})")
    for i, name in enumerate(["image side / box side", "centre offset x / side", "centre offset y / side"]):
        q = np.percentile(a[:, i], [25, 50, 75])
        print(f"{name:<24} median {q[1]:+.3f}  (quartiles {q[0]:+.3f} .. {q[2]:+.3f})")
    margin = float(np.median(a[:, 0]) - 1)
    print(f"-> FER2013's frame is the detector's box grown by prepare.margin = {margin:.2f}")
    if args.sheet and args.clips:
        framing_sheet(args.root, args.clips, args.sheet, round(margin, 2))


if __name__ == "__main__":
    main()

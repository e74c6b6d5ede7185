"""The six genuine CREMA-D sample clips: what a model says, beside what the clip was acted as and what
CREMA-D's crowd saw in the face alone (`processedResults/summaryTable.csv`, FaceVote and its agreement).

    .venv/bin/python bench/crema_sample.py PATH/TO/crema-d [--checkpoint default]

Each clip is classified as one window over the whole clip (`window="clip"`: its frames sampled as
`vemo evaluate` samples a clip). Prints a Markdown table; FER2013 models answer in FER2013's seven
classes (surprise included), CREMA-D has six.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import vemo
from vemo.data.sources.crema_d import VOTE_CODES, read_table
from vemo.data.sources.records import canonical_label


def crowd_votes(root: Path) -> dict[str, tuple[str, str]]:
    """Clip name -> (the crowd's face-only label, its agreement in percent); ties read "angry/disgust"."""
    table = read_table(root / "processedResults" / "summaryTable.csv", ("FileName", "FaceVote", "FaceLevel"))
    return {
        r["FileName"]: (
            "/".join(VOTE_CODES.get(v, v) for v in r["FaceVote"].split(":")),
            "/".join(f"{float(v):.0f}%" for v in r["FaceLevel"].split(":")),
        )
        for r in table
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="a CREMA-D folder holding VideoFlash/ and processedResults/")
    p.add_argument("--checkpoint", default="default")
    args = p.parse_args()
    clips = sorted((args.root / "VideoFlash").glob("*.flv"))
    votes = crowd_votes(args.root)
    df = vemo.predict(clips, args.checkpoint, window="clip").set_index("source")
    print("| clip | acted | crowd, face only (agreement) | vemo | confidence | vemo's top two |")
    print("|---|---|---|---|---:|---|")
    agree_acted = agree_crowd = 0
    for clip in clips:
        if str(clip) not in df.index:
            print(f"| {clip.stem} | skipped: {dict(df.attrs.get('skipped', [])).get(str(clip), '?')} |||||")
            continue
        row = df.loc[str(clip)]
        acted = canonical_label(clip.stem.split("_")[2])
        crowd, level = votes.get(clip.stem, ("?", "?"))
        probs = {c[2:]: row[c] for c in df.columns if c.startswith("p_")}
        top = sorted(probs, key=probs.get, reverse=True)[:2]
        agree_acted += row["label"] == acted
        agree_crowd += row["label"] in crowd.split("/")
        print(
            f"| {clip.stem} | {acted} | {crowd} ({level}) | {row['label']} | {row['confidence']:.2f} | "
            f"{top[0]} {probs[top[0]]:.2f}, {top[1]} {probs[top[1]]:.2f} |"
        )
    print(
        f"\nagrees with the acted label on {agree_acted} of {len(clips)}, with the crowd's face vote on {agree_crowd}"
    )


if __name__ == "__main__":
    main()

"""Contact sheets of prepared clips: what the model actually gets, one PNG per clip.

Looking at the crops is the fastest way to catch a wrong face box, a bad margin or a decoding problem
before spending an hour training on them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from vemo.data.loading.prepare import Prepared
from vemo.data.preprocessing.stills import to_sequences
from vemo.io import atomic_write

SCALE = 2  # 48-pixel crops are drawn at 96 pixels


def contact_sheet(clip: np.ndarray, title: str) -> np.ndarray:
    """(T, S, S) uint8 -> one image: the T frames in a row under a title bar."""
    row = np.concatenate([np.pad(f, 1, constant_values=255) for f in clip], axis=1)
    row = cv2.resize(row, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
    bar = np.full((22, row.shape[1]), 255, np.uint8)
    cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    return np.concatenate([bar, row], axis=0)


def save_previews(prepared: Prepared, out_dir: str | Path, limit: int = 50) -> list[Path]:
    """Write `<clip>.png` contact sheets for the first `limit` prepared items; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(np.array(prepared.frames()[:limit]))
    if prepared.kind == "stills":  # shown as the sequences the model evaluates
        x = to_sequences(x, prepared.settings.frames)
    paths = []
    for k, item in enumerate(prepared.items[:limit]):
        face = "face found" if item.get("face_detected") else "no face: centre crop"
        if prepared.kind == "stills":
            face = "still -> simulated motion"
        title = f"{Path(item['source']).name}  {item['label']}  {item['split']}  {face}"
        ok, png = cv2.imencode(".png", contact_sheet(x[k].numpy(), title))
        path = out / f"{Path(item['source'].replace('#', '_')).stem}.png"
        atomic_write(path, lambda fh, data=png: fh.write(data.tobytes()))
        paths.append(path)
    return paths

"""The prediction table's schema, shared by `vemo.predict` (a DataFrame) and `vemo predict` (CSV, JSON lines).

One row per window per face. README's "Output schema" section documents every column; `columns`
is the one place their order is defined.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from vemo.io import write_text

ID_COLUMNS = ["source", "face", "start", "end", "label", "confidence"]
BOX_COLUMNS = ["x", "y", "w", "h"]


def columns(labels: list[str]) -> list[str]:
    """source, face, start, end, label, confidence, p_<class>..., x, y, w, h, status, found, smoothed_<class>..."""
    return [
        *ID_COLUMNS,
        *[f"p_{lab}" for lab in labels],
        *BOX_COLUMNS,
        "status",
        "found",
        *[f"smoothed_{lab}" for lab in labels],
    ]


def records(rows: list[dict], labels: list[str], source: str) -> list[dict]:
    """Rows as complete records in column order (None where a value does not apply, e.g. no-face windows)."""
    return [{c: source if c == "source" else r.get(c) for c in columns(labels)} for r in rows]


def to_frame(recs: list[dict], labels: list[str]):
    """Records -> pandas.DataFrame with every column present (also when there are no rows)."""
    import pandas as pd

    df = pd.DataFrame.from_records(recs, columns=columns(labels))
    return df.astype({c: "float64" for c in columns(labels) if c not in ("source", "face", "found", "label", "status")})


def write_csv(path: str | Path, recs: list[dict], labels: list[str]) -> None:
    """CSV through the csv module (a label or path with a comma or quote stays one field); empty = missing."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(labels), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in recs)
    write_text(path, buf.getvalue())


def write_jsonl(path: str | Path, recs: list[dict]) -> None:
    """One JSON object per line (null where a value does not apply): streams into pandas, jq, DuckDB."""
    write_text(path, "".join(json.dumps({k: _plain(v) for k, v in r.items()}) + "\n" for r in recs))


def _plain(v):
    return None if isinstance(v, float) and math.isnan(v) else v

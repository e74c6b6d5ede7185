"""A tiny document model rendered two ways: Markdown (report.md) and self-contained HTML (report.html).

The report is built once as a list of blocks, so the two files cannot drift apart. HTML embeds its
figures as base64 PNGs, so it is one file that can be mailed or opened offline. PDF comes from the
HTML through headless Chromium when it is installed (`print_pdf`).
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vemo.io import remove_stale_temps


@dataclass
class Block:
    kind: str  # h1 h2 p ul table img
    content: object


def _inline_html(text: str) -> str:
    """`code` and **bold** only: all the inline markup the report uses."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            lines += [f"# {b.content}", ""]
        elif b.kind == "h2":
            lines += [f"## {b.content}", ""]
        elif b.kind == "p":
            lines += [str(b.content), ""]
        elif b.kind == "ul":
            lines += [f"- {item}" for item in b.content] + [""]  # type: ignore[union-attr]
        elif b.kind == "table":
            header, rows = b.content  # type: ignore[misc]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]
        elif b.kind == "img":
            for path, alt in b.content:  # type: ignore[union-attr]
                lines.append(f"![{alt}]({path})")
            lines.append("")
    return "\n".join(lines)


CSS = """
body{font:10.5px/1.4 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:980px;margin:18px auto;
color:#222;padding:0 12px}
h1{font-size:19px;margin:0 0 4px}h2{font-size:13.5px;margin:12px 0 4px;border-bottom:1px solid #ddd}
p,ul{margin:3px 0 6px}ul{padding-left:18px}code{background:#f3f3f3;padding:0 2px;font-size:9.5px}
table{border-collapse:collapse;margin:4px 0 8px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f5f5f5}
.figs{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start}.figs img{max-width:100%;max-height:210px}
@media print{body{margin:0;max-width:none;font-size:9px}h2{break-after:avoid;margin-top:7px}
.figs{break-inside:avoid}.figs img{max-height:150px}table{font-size:8.5px}@page{margin:9mm}}
"""


def to_html(blocks: list[Block], base: Path, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{CSS}</style></head><body>")
    for b in blocks:
        if b.kind in ("h1", "h2", "p"):
            parts.append(f"<{b.kind}>{_inline_html(str(b.content))}</{b.kind}>")
        elif b.kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.content) + "</ul>")  # type: ignore[union-attr]
        elif b.kind == "table":
            header, rows = b.content  # type: ignore[misc]
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif b.kind == "img":
            imgs = []
            for path, alt in b.content:  # type: ignore[union-attr]
                data = base64.b64encode((base / path).read_bytes()).decode()
                imgs.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>")
            parts.append(f"<div class='figs{' one' if len(imgs) == 1 else ''}'>{''.join(imgs)}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def chromium_run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a throw-away profile (no sandbox: it runs as root in containers)."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium/Chrome found (Debian: apt install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def print_pdf(html_path: Path, pdf_path: Path) -> bool:
    """report.html -> report.pdf with headless Chromium; False (and nothing written) when unavailable."""
    if find_chromium() is None:
        return False
    # named as atomic_write names its temporaries, so one left by a killed run is cleaned up next time
    remove_stale_temps(pdf_path.parent, pdf_path.name)
    tmp = pdf_path.with_name(f".{pdf_path.name}.{os.getpid()}.chromium.tmp")
    try:
        result = chromium_run(["--no-pdf-header-footer", f"--print-to-pdf={tmp}", html_path.resolve().as_uri()])
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        return False
    if result.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(pdf_path)
    return True
